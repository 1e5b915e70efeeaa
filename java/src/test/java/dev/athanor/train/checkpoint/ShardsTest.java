package dev.athanor.train.checkpoint;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import com.google.gson.JsonObject;
import dev.athanor.nn.TensorParallel;
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
      List<Shards.Piece> pieces = Shards.write(dir.resolve(name), TENSORS, part(FLAT, r, n), (role, p) -> {
        long off = TENSORS.get(p.tensor()).offset();
        float[] f = java.util.Arrays.copyOfRange(state.get(role), (int) (off + p.start()), (int) (off + p.end()));
        return Tensor.of(f, f.length);
      });
      files.add(name, record(dir.resolve(name), pieces));
    }
    return files;
  }

  /** A rank file's record in the manifest: its size, checksum and pieces. */
  private static JsonObject record(Path file, List<Shards.Piece> pieces) throws Exception {
    JsonObject info = new JsonObject();
    info.addProperty("bytes", Files.size(file));
    info.addProperty("crc32c", Checkpoint.crc32c(file));
    info.add("pieces", Shards.piecesJson(pieces));
    return info;
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
  void aPieceWithADimButNoSliceIsRefused() throws Exception {
    Path dir = tmp.resolve("dim");
    JsonObject filesJson = writeAll(dir, state(), 1);
    filesJson.getAsJsonObject("rank-0-of-1.safetensors").getAsJsonArray("pieces").get(0).getAsJsonObject().addProperty("dim", 0);
    CheckpointException e = assertThrows(CheckpointException.class, () -> Shards.pieces(filesJson, TENSORS, "m.json"));
    assertTrue(e.getMessage().contains("a dim but no slice"), e.getMessage());
  }

  // ---------------------------------------------------------------- tensor-parallel pieces (dim and slice)

  /** A fused q|k|v weight split along dim 1 in 3 segments, a row-parallel weight split along dim 0, a replicated norm. */
  private static final List<Shards.GlobalTensor> TP_TENSORS = List.of(
      new Shards.GlobalTensor("qkv", DType.F32, new long[] {4, 12}, 0),
      new Shards.GlobalTensor("down", DType.F32, new long[] {8, 3}, 48),
      new Shards.GlobalTensor("norm", DType.F32, new long[] {5}, 72));
  private static final List<TensorParallel.Split> TP_SPLITS = List.of(new TensorParallel.Split(1, 3),
      new TensorParallel.Split(0, 1), TensorParallel.Split.REPLICATED);

  /** Each role's values of each of {@link #TP_TENSORS}, by role then tensor. */
  private static Map<String, List<float[]>> tpState() {
    Random rnd = new Random(7);
    Map<String, List<float[]>> s = new java.util.LinkedHashMap<>();
    for (String role : Shards.ROLES) {
      List<float[]> l = new java.util.ArrayList<>();
      for (Shards.GlobalTensor g : TP_TENSORS) {
        float[] f = new float[(int) g.numel()];
        for (int e = 0; e < f.length; e++) f[e] = Float.intBitsToFloat(rnd.nextInt() & 0x3fffffff);
        l.add(f);
      }
      s.put(role, l);
    }
    return s;
  }

  /** Elements {@code [a, b)} (row-major) of region {@code s} of {@code whole} (shape {@code shape}). */
  private static float[] region(float[] whole, long[] shape, Shards.Slice s, long a, long b) {
    try (Tensor all = Tensor.of(whole, shape); Tensor part = s.whole() ? all.view(-1) : all.slice(s.dim(), s.lo(), s.hi());
        Tensor c = part.contiguous(); Tensor flat = c.view(-1); Tensor range = flat.slice(0, a, b)) {
      return range.toFloatArray();
    }
  }

  /**
   * Writes the state as a dp × tp run would: tensor-parallel rank t of replica d writes its slices of each split tensor
   * (cut between the replicas along the dim, or with {@code flatCut} into flat ranges of each slice) and its cut of each
   * replicated tensor. Returns the manifest's files member.
   */
  private static JsonObject writeTensorParallel(Path dir, Map<String, List<float[]>> state, int dp, int tp, boolean flatCut)
      throws Exception {
    Files.createDirectories(dir);
    JsonObject files = new JsonObject();
    for (int r = 0; r < dp * tp; r++) {
      int t = r % tp, d = r / tp;
      List<Shards.Part> parts = new java.util.ArrayList<>();
      for (int i = 0; i < TP_TENSORS.size(); i++) {
        Shards.GlobalTensor g = TP_TENSORS.get(i);
        TensorParallel.Split split = TP_SPLITS.get(i);
        if (split.replicated()) {
          Range c = RankGroup.cut(g.numel(), r, dp * tp);
          if (!c.isEmpty()) parts.add(new Shards.Part(i, c.start(), c.end()));
          continue;
        }
        for (long[] held : new TensorParallel(tp, t).slices(split, g.shape())) {
          if (flatCut) {
            Shards.Slice s = new Shards.Slice(split.dim(), held[0], held[1]);
            Range c = RankGroup.cut(s.numel(g.shape()), d, dp);
            if (!c.isEmpty()) parts.add(new Shards.Part(i, s, c.start(), c.end()));
          } else {
            Range c = RankGroup.cut(held[1] - held[0], d, dp);
            if (c.isEmpty()) continue;
            Shards.Slice s = new Shards.Slice(split.dim(), held[0] + c.start(), held[0] + c.end());
            parts.add(new Shards.Part(i, s, 0, s.numel(g.shape())));
          }
        }
      }
      String name = Shards.fileName(r, dp * tp);
      List<Shards.Piece> pieces = Shards.write(dir.resolve(name), TP_TENSORS, parts, (role, p) -> {
        float[] f = region(state.get(role).get(p.tensor()), TP_TENSORS.get(p.tensor()).shape(), p.slice(), p.start(), p.end());
        return Tensor.of(f, f.length);
      });
      files.add(name, record(dir.resolve(name), pieces));
    }
    return files;
  }

  /** Region {@code s}'s elements {@code [a, b)}, read in host chunks of 5 elements (so also across chunk boundaries). */
  private static float[] readRegion(Path dir, Map<String, List<Shards.Piece>> files, String role, Shards.GlobalTensor g,
      Shards.Slice s, long a, long b) {
    try (Shards.Reader reader = new Shards.Reader(); Tensor dst = Tensor.empty(DType.F32, dev.athanor.runtime.Device.CPU, b - a)) {
      Shards.read(dir, files, reader, role, g, s, a, b, dst, 5);
      return dst.toFloatArray();
    }
  }

  @Test
  void slicedPiecesOfEveryLayoutReadBackAsEveryOtherLayoutsRegionsBitForBit() throws Exception {
    Map<String, List<float[]>> state = tpState();
    int written = 0;
    for (int[] layout : new int[][] {{1, 2}, {2, 2}, {3, 2}, {1, 4}}) {
      for (boolean flatCut : new boolean[] {false, true}) {
        int dp = layout[0], tp = layout[1];
        Path dir = tmp.resolve("tp-" + dp + "x" + tp + "-" + flatCut);
        JsonObject filesJson = writeTensorParallel(dir, state, dp, tp, flatCut);
        Map<String, List<Shards.Piece>> files = Shards.pieces(filesJson, TP_TENSORS, "test");
        for (Shards.Piece p : files.values().stream().flatMap(List::stream).toList()) {
          if (p.tensor().equals("qkv")) assertEquals(1, p.slice().dim(), "qkv is cut along dim 1: " + p);
        }
        assertEveryLayoutReadsBack(dir, files, state, "dp " + dp + " x tp " + tp + (flatCut ? " (flat ranges of slices)" : ""));
        written++;
      }
    }
    assertEquals(8, written);
  }

  /**
   * Every role of every one of {@link #TP_TENSORS} reads back from {@code files} as {@code state} holds it, bit for bit:
   * whole and a flat range of it (one process), and each slice a rank of tp 1, 2 and 4 holds, whole and in part.
   */
  private static void assertEveryLayoutReadsBack(Path dir, Map<String, List<Shards.Piece>> files, Map<String, List<float[]>> state,
      String what) {
    for (String role : Shards.ROLES) {
      for (int i = 0; i < TP_TENSORS.size(); i++) {
        Shards.GlobalTensor g = TP_TENSORS.get(i);
        float[] whole = state.get(role).get(i);
        // one process: the whole tensor, and any flat range of it
        assertArrayEquals(bits(whole), bits(readRegion(dir, files, role, g, Shards.Slice.WHOLE, 0, g.numel())), what + " " + g);
        assertArrayEquals(bits(region(whole, g.shape(), Shards.Slice.WHOLE, 1, g.numel() - 1)),
            bits(readRegion(dir, files, role, g, Shards.Slice.WHOLE, 1, g.numel() - 1)), what + " range of " + g);
        // every rank of other tensor-parallel layouts: its slices, and a part of each
        for (int readers : new int[] {1, 2, 4}) {
          for (int r = 0; r < readers; r++) {
            for (long[] held : new TensorParallel(readers, r).slices(TP_SPLITS.get(i), g.shape())) {
              Shards.Slice s = new Shards.Slice(TP_SPLITS.get(i).dim(), held[0], held[1]);
              long n = s.numel(g.shape());
              assertArrayEquals(bits(region(whole, g.shape(), s, 0, n)), bits(readRegion(dir, files, role, g, s, 0, n)),
                  what + " read by tp " + readers + " rank " + r + ": " + g + s);
              assertArrayEquals(bits(region(whole, g.shape(), s, 1, n - 1)), bits(readRegion(dir, files, role, g, s, 1, n - 1)),
                  what + " part of " + g + s);
            }
          }
        }
      }
    }
  }

  /**
   * ZeRO 1 or 2 under tensor parallelism, as dp × tp ranks write it: each tp rank's local tensors (its slices of each
   * split tensor, concatenated; the replicated ones whole) lie in a flat store with gaps, cut between its dp group into
   * ZeRO shards; each rank writes the parts {@link ShardSlices#parts} lists of its shard, from the views of its store
   * that {@link ShardSlices#locate} and {@link ShardSlices#view} give (the fused qkv's whole rows a strided view). The
   * manifest's checks pass (every element once), and every tensor reads back whole and as every tp layout's slices bit
   * for bit.
   */
  @Test
  void zeroShardsOfTensorParallelPartsReadBackAsEveryLayoutBitForBit() throws Exception {
    Map<String, List<float[]>> state = tpState();
    int partialRows = 0;
    for (int[] layout : new int[][] {{2, 2}, {3, 2}, {2, 4}, {5, 1}}) {
      int dp = layout[0], tp = layout[1];
      Path dir = tmp.resolve("zero-tp-" + dp + "x" + tp);
      Files.createDirectories(dir);
      JsonObject filesJson = new JsonObject();
      int strided = 0;
      for (int r = 0; r < dp * tp; r++) {
        TensorParallel rank = new TensorParallel(tp, r % tp);
        long[] at = new long[TP_TENSORS.size()], numel = new long[TP_TENSORS.size()];
        long n = 0;
        for (int i = 0; i < TP_TENSORS.size(); i++) {
          at[i] = n + 3;  // a gap before each tensor, as the store's alignment leaves
          numel[i] = java.util.Arrays.stream(rank.localShape(TP_SPLITS.get(i), TP_TENSORS.get(i).shape())).reduce(1, (x, y) -> x * y);
          n = at[i] + numel[i];
        }
        Map<String, float[]> store = new java.util.LinkedHashMap<>();
        for (String role : Shards.ROLES) {
          float[] f = new float[(int) n];
          java.util.Arrays.fill(f, Float.NaN);
          for (int i = 0; i < TP_TENSORS.size(); i++) {
            Shards.GlobalTensor g = TP_TENSORS.get(i);
            try (Tensor whole = Tensor.of(state.get(role).get(i), g.shape());
                Tensor local = Tensor.empty(DType.F32, dev.athanor.runtime.Device.CPU, rank.localShape(TP_SPLITS.get(i), g.shape()))) {
              rank.shard(TP_SPLITS.get(i), whole, local);
              System.arraycopy(local.toFloatArray(), 0, f, (int) at[i], (int) numel[i]);
            }
          }
          store.put(role, f);
        }
        Range shard = RankGroup.cut(n, r / tp, dp);
        List<Shards.Part> parts = new java.util.ArrayList<>();
        for (int i = 0; i < TP_TENSORS.size(); i++) {
          Range mine = new Range(at[i], at[i] + numel[i]).intersect(shard);
          if (mine.isEmpty()) continue;
          parts.addAll(ShardSlices.parts(i, TP_TENSORS.get(i).shape(), rank, TP_SPLITS.get(i), mine.start() - at[i], mine.end() - at[i]));
        }
        for (Shards.Part p : parts) {
          ShardSlices.Run run = ShardSlices.locate(TP_TENSORS.get(p.tensor()).shape(), rank, TP_SPLITS.get(p.tensor()), p);
          assertTrue(shard.contains(new Range(at[p.tensor()] + run.span().start(), at[p.tensor()] + run.span().end())),
              "part " + p + " lies in rank " + r + "'s shard " + shard);
          if (run.rows() > 1) strided++;
          if (p.tensor() == 0 && run.rows() == 1 && run.rowLength() < run.stride() / 3) partialRows++;  // part of a qkv row
        }
        String name = Shards.fileName(r, dp * tp);
        List<Shards.Piece> pieces = Shards.write(dir.resolve(name), TP_TENSORS, parts, (role, p) -> {
          ShardSlices.Run run = ShardSlices.locate(TP_TENSORS.get(p.tensor()).shape(), rank, TP_SPLITS.get(p.tensor()), p);
          try (Tensor all = Tensor.of(store.get(role), store.get(role).length)) {
            return ShardSlices.view(all.slice(0, at[p.tensor()] + run.span().start(), at[p.tensor()] + run.span().end()), run);
          }
        });
        filesJson.add(name, record(dir.resolve(name), pieces));
      }
      assertTrue(strided > 0, "dp " + dp + " x tp " + tp + ": no strided part");
      assertEveryLayoutReadsBack(dir, Shards.pieces(filesJson, TP_TENSORS, "test"), state, "ZeRO over dp " + dp + " x tp " + tp);
    }
    assertTrue(partialRows > 0, "no shard cut a row of qkv's slices");
  }

  @Test
  void wholeTensorPiecesReadBackAsTensorParallelSlices() throws Exception {
    Map<String, List<float[]>> state = tpState();
    Path dir = tmp.resolve("whole");
    JsonObject filesJson = writeTensorParallel(dir, state, 3, 1, false);  // tp 1: every split tensor in whole slices
    Map<String, List<Shards.Piece>> files = Shards.pieces(filesJson, TP_TENSORS, "test");
    Shards.GlobalTensor g = TP_TENSORS.get(0);
    for (int r = 0; r < 4; r++) {
      for (long[] held : new TensorParallel(4, r).slices(TP_SPLITS.get(0), g.shape())) {
        Shards.Slice s = new Shards.Slice(1, held[0], held[1]);
        assertArrayEquals(bits(region(state.get("adam_v").get(0), g.shape(), s, 0, 4)), bits(readRegion(dir, files, "adam_v",
            g, s, 0, 4)), "rank " + r + s);
      }
    }
  }

  /** The first piece of {@code tensor} in {@code files}, as JSON to edit. */
  private static JsonObject firstPiece(JsonObject files, String tensor) {
    for (String f : files.keySet()) {
      for (var e : files.getAsJsonObject(f).getAsJsonArray("pieces")) {
        if (e.getAsJsonObject().get("tensor").getAsString().equals(tensor)) return e.getAsJsonObject();
      }
    }
    throw new AssertionError("no piece of " + tensor);
  }

  @Test
  void aSliceOutsideItsTensorIsRefusedNamingIt() throws Exception {
    JsonObject filesJson = writeTensorParallel(tmp.resolve("bad"), tpState(), 1, 2, false);
    com.google.gson.JsonArray bad = new com.google.gson.JsonArray();
    bad.add(8);
    bad.add(14);
    firstPiece(filesJson, "qkv").add("slice", bad);
    CheckpointException e = assertThrows(CheckpointException.class, () -> Shards.pieces(filesJson, TP_TENSORS, "m.json"));
    assertTrue(e.getMessage().contains("slice [8, 14) outside [0, 12) along dim 1"), e.getMessage());
    assertTrue(e.getMessage().startsWith("m.json: file rank-"), e.getMessage());
  }

  @Test
  void aRangeOutsideItsSliceIsRefused() throws Exception {
    JsonObject filesJson = writeTensorParallel(tmp.resolve("range"), tpState(), 1, 2, false);
    JsonObject p = firstPiece(filesJson, "qkv");
    p.addProperty("end", p.get("end").getAsLong() + 1);
    p.addProperty("bytes", p.get("bytes").getAsLong() + 4);
    CheckpointException e = assertThrows(CheckpointException.class, () -> Shards.pieces(filesJson, TP_TENSORS, "m.json"));
    assertTrue(e.getMessage().contains("invalid piece") && e.getMessage().contains("qkv [0, 2) along dim 1"), e.getMessage());
  }

  @Test
  void slicesThatLeaveAGapOrMixDimsAreRefused() throws Exception {
    JsonObject gapJson = writeTensorParallel(tmp.resolve("gap"), tpState(), 1, 2, false);
    for (String f : gapJson.keySet()) {  // drop rank 1's first q slice of "qkv"'s master: [2, 4) along dim 1
      var ps = gapJson.getAsJsonObject(f).getAsJsonArray("pieces");
      for (int k = 0; k < ps.size(); k++) {
        JsonObject p = ps.get(k).getAsJsonObject();
        if (p.get("tensor").getAsString().equals("qkv") && p.get("role").getAsString().equals("master")
            && p.getAsJsonArray("slice").get(0).getAsLong() == 2) {
          ps.remove(k);
          break;
        }
      }
    }
    CheckpointException gap = assertThrows(CheckpointException.class, () -> Shards.pieces(gapJson, TP_TENSORS, "m.json"));
    assertTrue(gap.getMessage().contains("master of qkv has no piece holding [2, 4) along dim 1"), gap.getMessage());

    JsonObject mixJson = writeTensorParallel(tmp.resolve("mix"), tpState(), 1, 2, false);
    JsonObject down = firstPiece(mixJson, "down");  // [0, 4) along dim 0, 12 elements: now [0, 3) along dim 1 (24)
    down.addProperty("dim", 1);
    com.google.gson.JsonArray cols = new com.google.gson.JsonArray();
    cols.add(0);
    cols.add(3);
    down.add("slice", cols);
    CheckpointException mix = assertThrows(CheckpointException.class, () -> Shards.pieces(mixJson, TP_TENSORS, "m.json"));
    assertTrue(mix.getMessage().contains("of down mixes pieces cut along dim"), mix.getMessage());
  }
}
