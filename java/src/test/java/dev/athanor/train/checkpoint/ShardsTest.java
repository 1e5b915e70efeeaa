package dev.athanor.train.checkpoint;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import com.google.gson.JsonObject;
import dev.athanor.params.Range;
import dev.athanor.tensor.DType;
import dev.athanor.tensor.Tensor;
import java.nio.ByteBuffer;
import java.nio.channels.FileChannel;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardOpenOption;
import java.util.List;
import java.util.Map;
import java.util.Random;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * The multi-process format's pieces without MPI: a known state (three tensors with alignment gaps in the flat order,
 * masters and both moments) split among N = 1, 2, 3 writers, read back by every rank of M = 1, 2, 3 readers (each its own
 * cut, and whole tensors), bit for bit; a corrupted, missing or unlisted rank file is an error naming it.
 */
class ShardsTest {
  @TempDir Path tmp;

  private static final List<Shards.GlobalTensor> TENSORS = List.of(new Shards.GlobalTensor("a.weight", DType.F32,
      new long[] {5, 3}, 0), new Shards.GlobalTensor("b.bias", DType.F32, new long[] {7}, 16),
      new Shards.GlobalTensor("c.weight", DType.F32, new long[] {4, 4}, 64));
  private static final long FLAT = 80;

  /** Each role's flat values (gaps hold NaN, which no reader may copy). */
  private static Map<String, float[]> state() {
    Random rnd = new Random(42);
    Map<String, float[]> s = new java.util.LinkedHashMap<>();
    for (String role : Shards.ROLES) {
      float[] f = new float[(int) FLAT];
      java.util.Arrays.fill(f, Float.NaN);
      for (Shards.GlobalTensor g : TENSORS) {
        for (long e = 0; e < g.numel(); e++) f[(int) (g.offset() + e)] = Float.intBitsToFloat(rnd.nextInt() & 0x3fffffff);
      }
      s.put(role, f);
    }
    return s;
  }

  private static Range part(long n, int r, int size) {
    return new RankGroup(r, size, size, 1, () -> {}).part(n);
  }

  /** Writes the state as {@code n} ranks would into {@code dir}; returns the manifest's files member. */
  private static JsonObject writeAll(Path dir, Map<String, float[]> state, int n) throws Exception {
    Files.createDirectories(dir);
    JsonObject files = new JsonObject();
    for (int r = 0; r < n; r++) {
      String name = Shards.fileName(r, n);
      List<Shards.Piece> pieces = Shards.write(dir.resolve(name), TENSORS, part(FLAT, r, n), (role, i, a, b) -> {
        long off = TENSORS.get(i).offset();
        float[] f = java.util.Arrays.copyOfRange(state.get(role), (int) (off + a), (int) (off + b));
        return Tensor.of(f, f.length);
      });
      JsonObject info = new JsonObject();
      info.addProperty("bytes", Files.size(dir.resolve(name)));
      info.addProperty("crc32c", Checkpoint.crc32c(dir.resolve(name)));
      info.add("pieces", Shards.piecesJson(pieces));
      files.add(name, info);
    }
    return files;
  }

  private static float[] read(Path dir, Map<String, List<Shards.Piece>> files, String role, Shards.GlobalTensor g, long a,
      long b) {
    try (Shards.Reader reader = new Shards.Reader(); Tensor dst = Tensor.empty(DType.F32, dev.athanor.runtime.Device.CPU, b - a)) {
      Shards.read(dir, files, reader, role, g, a, b, dst);
      return dst.toFloatArray();
    }
  }

  private static int[] bits(float[] f) {
    int[] b = new int[f.length];
    for (int i = 0; i < f.length; i++) b[i] = Float.floatToRawIntBits(f[i]);
    return b;
  }

  @Test
  void everySplitReadsBackIntoEveryOtherBitForBit() throws Exception {
    Map<String, float[]> state = state();
    for (int n = 1; n <= 3; n++) {
      Path dir = tmp.resolve("n" + n);
      JsonObject filesJson = writeAll(dir, state, n);
      Map<String, List<Shards.Piece>> files = Shards.pieces(filesJson, TENSORS, "test");
      assertEquals(n, files.size());
      for (int r = 0; r < n; r++) {
        assertTrue(Files.isRegularFile(dir.resolve("rank-" + r + "-of-" + n + ".safetensors")));
        // each rank file is a plain safetensors file: its pieces are its tensors
        try (var f = dev.athanor.io.safetensors.SafetensorsFile.open(dir.resolve(Shards.fileName(r, n)))) {
          assertEquals(files.get(Shards.fileName(r, n)).size(), f.entries().size());
        }
      }
      for (int m = 1; m <= 3; m++) {
        for (int q = 0; q < m; q++) {
          Range mine = part(FLAT, q, m);
          for (String role : Shards.ROLES) {
            for (Shards.GlobalTensor g : TENSORS) {
              Range r = g.flat().intersect(mine);
              if (r.isEmpty()) continue;
              float[] got = read(dir, files, role, g, r.start() - g.offset(), r.end() - g.offset());
              float[] want = java.util.Arrays.copyOfRange(state.get(role), (int) r.start(), (int) r.end());
              assertArrayEquals(bits(want), bits(got), "written by " + n + ", read by rank " + q + " of " + m + ": " + role
                  + " " + g.name() + " " + r);
            }
          }
        }
      }
      for (Shards.GlobalTensor g : TENSORS) {  // whole tensors (the masters every rank holds)
        float[] want = java.util.Arrays.copyOfRange(state.get("master"), (int) g.offset(), (int) (g.offset() + g.numel()));
        assertArrayEquals(bits(want), bits(read(dir, files, "master", g, 0, g.numel())), n + " writers: " + g.name());
      }
    }
  }

  @Test
  void aCorruptedRankFileIsAnErrorNamingTheFileAndThePiece() throws Exception {
    Path dir = tmp.resolve("corrupt");
    Map<String, List<Shards.Piece>> files = Shards.pieces(writeAll(dir, state(), 2), TENSORS, "test");
    Shards.Piece p = files.get("rank-1-of-2.safetensors").get(0);
    try (FileChannel ch = FileChannel.open(dir.resolve("rank-1-of-2.safetensors"), StandardOpenOption.WRITE)) {
      ch.write(ByteBuffer.wrap(new byte[] {0x7f}), p.byteOffset() + 1);
    }
    Shards.GlobalTensor g = TENSORS.stream().filter(t -> t.name().equals(p.tensor())).findFirst().orElseThrow();
    CheckpointException e = assertThrows(CheckpointException.class, () -> read(dir, files, p.role(), g, 0, g.numel()));
    assertTrue(e.getMessage().contains("rank-1-of-2.safetensors piece " + p + " fails its checksum"), e.getMessage());
  }

  @Test
  void aMissingOrUnlistedRankFileIsAnErrorNamingIt() throws Exception {
    Path dir = tmp.resolve("missing");
    JsonObject filesJson = writeAll(dir, state(), 3);
    Map<String, List<Shards.Piece>> files = Shards.pieces(filesJson, TENSORS, "test");
    Files.delete(dir.resolve("rank-2-of-3.safetensors"));
    Shards.GlobalTensor c = TENSORS.get(2);  // the last tensor lies in rank 2's cut
    CheckpointException e = assertThrows(CheckpointException.class, () -> read(dir, files, "adam_v", c, 0, c.numel()));
    assertTrue(e.getMessage().contains("cannot read rank-2-of-3.safetensors"), e.getMessage());

    filesJson.remove("rank-2-of-3.safetensors");  // a manifest without it: the gap is named
    CheckpointException gap = assertThrows(CheckpointException.class, () -> Shards.pieces(filesJson, TENSORS, "m.json"));
    assertTrue(gap.getMessage().matches("m\\.json: master of .* has no piece holding elements \\[\\d+, \\d+\\)"), gap.getMessage());
  }

  @Test
  void aTensorParallelPieceIsRefusedByName() throws Exception {
    Path dir = tmp.resolve("tp");
    JsonObject filesJson = writeAll(dir, state(), 1);
    filesJson.getAsJsonObject("rank-0-of-1.safetensors").getAsJsonArray("pieces").get(0).getAsJsonObject().addProperty("dim", 0);
    CheckpointException e = assertThrows(CheckpointException.class, () -> Shards.pieces(filesJson, TENSORS, "m.json"));
    assertTrue(e.getMessage().contains("tensor-parallel piece"), e.getMessage());
  }
}
