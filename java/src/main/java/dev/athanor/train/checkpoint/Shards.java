package dev.athanor.train.checkpoint;

import com.google.gson.JsonArray;
import com.google.gson.JsonElement;
import com.google.gson.JsonObject;
import dev.athanor.io.FileProblems;
import dev.athanor.io.safetensors.SafetensorsFile;
import dev.athanor.io.safetensors.SafetensorsWriter;
import dev.athanor.io.safetensors.TensorEntry;
import dev.athanor.params.Range;
import dev.athanor.tensor.DType;
import dev.athanor.tensor.Tensor;
import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.channels.FileChannel;
import java.nio.file.Path;
import java.nio.file.StandardOpenOption;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.Comparator;
import java.util.HashMap;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.zip.CRC32C;

/**
 * The multi-process checkpoint format (format version 3): every rank writes the state it owns into its own file,
 * {@code rank-<r>-of-<N>.safetensors}, and one manifest describes the global tensors and where each piece of them lies.
 *
 * <p><b>Global tensors</b> ({@link GlobalTensor}): each parameter's name, dtype, shape and the offset of its element 0 in
 * the flat parameter store. The store's flat order (with its alignment gaps) is what ranks cut into contiguous parts
 * ({@code Communicator.partStart}); a rank owning the flat range {@code [a, b)} writes, for each role ({@link #ROLES}:
 * FP32 masters, AdamW's first and second moments), one piece per parameter overlapping that range.
 *
 * <p><b>Pieces</b> ({@link Piece}): role, tensor name, the element range {@code [start, end)} within the tensor's
 * row-major order, the byte offset and length of its data in the rank file (little-endian, the tensor's dtype), and the
 * CRC32C of those bytes. Each piece is also a 1-D tensor of the safetensors file ({@code <role>/<tensor>/<start>}), so a
 * rank file is readable by any safetensors reader. A reader needs only the manifest: it reads the pieces overlapping
 * the elements it needs, one piece at a time (memory bounded by the largest piece), and copies the overlap; so any
 * number of ranks, with any ZeRO stage, resumes from pieces written by any other.
 *
 * <p><b>Pipeline parallelism</b> fits without a new record: a pipeline stage's ranks write pieces ({@link Part}s) of
 * their stage's tensors only, cut between the stage's data-parallel replicas as above (by their ZeRO 1 shard of the
 * stage's store, or their cut of it); the last stage's copy of a tied embedding is not written (the first stage writes
 * the tensor once). The manifest lists every global tensor of the whole model with its offset in one process's flat
 * layout, so one process, or any other layout, reads it; a stage reads the pieces of its own tensors only.
 *
 * <p><b>Tensor parallelism</b> is gathered to rank 0 in the single-process format instead. A per-rank tensor-parallel
 * cut will add {@code dim} and {@code slice} ({@code [lo, hi)} along {@code dim}) to a piece, its {@code start}/{@code
 * end} then counting elements in the row-major order of that slice. This version refuses a piece with a {@code dim}
 * (naming it) rather than misreading it.
 */
final class Shards {
  /** The roles a piece holds, as named in the manifest. */
  static final List<String> ROLES = List.of("master", "adam_m", "adam_v");

  /** Pieces as JSON: the record's components, in snake case. */
  private static final com.google.gson.Gson JSON = new com.google.gson.GsonBuilder()
      .setFieldNamingPolicy(com.google.gson.FieldNamingPolicy.LOWER_CASE_WITH_UNDERSCORES).create();

  private Shards() {}

  /** A tensor of the global (unsharded) state: element 0 lies at {@code offset} in the flat parameter store. */
  record GlobalTensor(String name, DType dtype, long[] shape, long offset) {
    GlobalTensor {
      shape = shape.clone();
    }

    @Override
    public long[] shape() {
      return shape.clone();
    }

    long numel() {
      long n = 1;
      for (long d : shape) n *= d;
      return n;
    }

    /** Its elements as a range of the flat store. */
    Range flat() {
      return new Range(offset, offset + numel());
    }

    JsonObject toJson() {
      JsonObject o = new JsonObject();
      o.addProperty("name", name);
      o.addProperty("dtype", dtype.name());
      JsonArray s = new JsonArray();
      for (long d : shape) s.add(d);
      o.add("shape", s);
      o.addProperty("offset", offset);
      return o;
    }

    static GlobalTensor fromJson(JsonObject o) {
      JsonArray s = o.getAsJsonArray("shape");
      long[] shape = new long[s.size()];
      for (int i = 0; i < shape.length; i++) shape[i] = s.get(i).getAsLong();
      return new GlobalTensor(o.get("name").getAsString(), DType.valueOf(o.get("dtype").getAsString()), shape,
          o.get("offset").getAsLong());
    }

    @Override
    public boolean equals(Object x) {
      return x instanceof GlobalTensor g && g.name.equals(name) && g.dtype == dtype && Arrays.equals(g.shape, shape)
          && g.offset == offset;
    }

    @Override
    public int hashCode() {
      return name.hashCode() * 31 + Arrays.hashCode(shape);
    }

    @Override
    public String toString() {
      return name + " " + dtype + Arrays.toString(shape) + " @" + offset;
    }
  }

  /**
   * Elements {@code [start, end)} (row-major) of role {@code role} of tensor {@code tensor}, stored at {@code byteOffset}
   * ({@code bytes} long, CRC32C {@code crc32c}, 8 hex digits) of its rank file.
   */
  record Piece(String role, String tensor, long start, long end, long byteOffset, long bytes, String crc32c) {
    /** The piece's name in the rank file (a safetensors tensor). */
    String key() {
      return key(role, tensor, start);
    }

    static String key(String role, String tensor, long start) {
      return role + "/" + tensor + "/" + start;
    }

    JsonObject toJson() {
      return JSON.toJsonTree(this).getAsJsonObject();  // role, tensor, start, end, byte_offset, bytes, crc32c
    }

    static Piece fromJson(JsonObject o, String where) {
      if (o.has("dim") || o.has("slice")) {
        throw new CheckpointException(where + ": a tensor-parallel piece (dim/slice) of " + o.get("tensor")
            + ", which this version of Athanor does not read");
      }
      for (String k : List.of("role", "tensor", "start", "end", "byte_offset", "bytes", "crc32c")) {
        if (!o.has(k)) throw new CheckpointException(where + ": a piece has no " + k + ": " + o);
      }
      return JSON.fromJson(o, Piece.class);
    }

    @Override
    public String toString() {
      return role + " " + tensor + " elements [" + start + ", " + end + ")";
    }
  }

  /** Views of a state by role and tensor: a 1-D view of elements {@code [start, end)} of {@code tensor}'s {@code role}. */
  @FunctionalInterface
  interface Views {
    Tensor view(String role, int tensor, long start, long end);
  }

  /** The file rank {@code rank} of {@code size} writes. */
  static String fileName(int rank, int size) {
    return "rank-" + rank + "-of-" + size + ".safetensors";
  }

  /**
   * Elements {@code [start, end)} (row-major) of global tensor {@code tensor} (an index into the manifest's tensor list)
   * that a rank writes: one piece per role.
   */
  record Part(int tensor, long start, long end) {
    Part {
      if (tensor < 0 || start < 0 || end <= start) {
        throw new IllegalArgumentException("part of tensor " + tensor + ": elements [" + start + ", " + end + ") is empty or negative");
      }
    }
  }

  /** The parts of {@code tensors} that overlap the flat range {@code owned}, in the tensors' order. */
  static List<Part> parts(List<GlobalTensor> tensors, Range owned) {
    List<Part> parts = new ArrayList<>();
    for (int i = 0; i < tensors.size(); i++) {
      GlobalTensor g = tensors.get(i);
      Range part = g.flat().intersect(owned);
      if (!part.isEmpty()) parts.add(new Part(i, part.start() - g.offset(), part.end() - g.offset()));
    }
    return parts;
  }

  /**
   * Writes the pieces of the flat range {@code owned} (every role, every tensor overlapping it) from {@code state} into
   * {@code file}, atomically and fsynced; returns them with their byte offsets and checksums.
   */
  static List<Piece> write(Path file, List<GlobalTensor> tensors, Range owned, Views state) {
    return write(file, tensors, parts(tensors, owned), state);
  }

  /**
   * Writes {@code parts} of {@code tensors} (every role of each; e.g. a pipeline stage's tensors only) from {@code
   * state} into {@code file}, atomically and fsynced; returns the pieces with their byte offsets and checksums.
   */
  static List<Piece> write(Path file, List<GlobalTensor> tensors, List<Part> parts, Views state) {
    Map<String, Tensor> views = new LinkedHashMap<>();
    try {
      for (String role : ROLES) {
        for (Part p : parts) {
          views.put(Piece.key(role, tensors.get(p.tensor()).name(), p.start()), state.view(role, p.tensor(), p.start(), p.end()));
        }
      }
      SafetensorsWriter.write(file, views, Map.of("format", "athanor-checkpoint-shard"));
    } finally {
      for (Tensor t : views.values()) t.close();
    }
    List<Piece> pieces = new ArrayList<>();
    try (SafetensorsFile f = SafetensorsFile.open(file); FileChannel ch = FileChannel.open(file, StandardOpenOption.READ)) {
      for (String role : ROLES) {
        for (Part p : parts) {
          String name = tensors.get(p.tensor()).name();
          TensorEntry e = f.entry(Piece.key(role, name, p.start()));
          long off = f.dataOffset() + e.begin(), len = e.end() - e.begin();
          pieces.add(new Piece(role, name, p.start(), p.end(), off, len, crc(readBytes(ch, off, len))));
        }
      }
    } catch (IOException e) {
      throw new CheckpointException("cannot read back " + file + ": " + FileProblems.reason(e), e);
    }
    return pieces;
  }

  /** The manifest's description of the global tensors. */
  static JsonArray tensorsJson(List<GlobalTensor> tensors) {
    JsonArray a = new JsonArray();
    for (GlobalTensor g : tensors) a.add(g.toJson());
    return a;
  }

  static List<GlobalTensor> tensors(JsonArray a) {
    List<GlobalTensor> l = new ArrayList<>();
    for (JsonElement e : a) l.add(GlobalTensor.fromJson(e.getAsJsonObject()));
    return l;
  }

  static JsonArray piecesJson(List<Piece> pieces) {
    JsonArray a = new JsonArray();
    for (Piece p : pieces) a.add(p.toJson());
    return a;
  }

  /**
   * The pieces of a version-3 manifest's {@code files} by file name, checked: every role of every tensor is covered by
   * pieces exactly once (no gap, no overlap), and every piece names a known tensor and role.
   */
  static Map<String, List<Piece>> pieces(JsonObject files, List<GlobalTensor> tensors, String where) {
    Map<String, GlobalTensor> byName = new HashMap<>();
    for (GlobalTensor g : tensors) {
      if (byName.put(g.name(), g) != null) throw new CheckpointException(where + ": tensor " + g.name() + " is listed twice");
    }
    Map<String, List<Piece>> out = new LinkedHashMap<>();
    Map<String, List<Piece>> byRoleTensor = new HashMap<>();
    for (Map.Entry<String, JsonElement> f : files.entrySet()) {
      List<Piece> ps = new ArrayList<>();
      JsonElement list = f.getValue().getAsJsonObject().get("pieces");
      if (list == null) throw new CheckpointException(where + ": file " + f.getKey() + " lists no pieces");
      for (JsonElement e : list.getAsJsonArray()) {
        Piece p = Piece.fromJson(e.getAsJsonObject(), where + " file " + f.getKey());
        GlobalTensor g = byName.get(p.tensor());
        if (g == null || !ROLES.contains(p.role()) || p.start() < 0 || p.end() <= p.start() || p.end() > g.numel()
            || p.bytes() != (p.end() - p.start()) * g.dtype().byteSize() || p.byteOffset() < 0) {
          throw new CheckpointException(where + ": file " + f.getKey() + " has an invalid piece " + p
              + (g == null ? " (no such tensor)" : " of " + g));
        }
        ps.add(p);
        byRoleTensor.computeIfAbsent(p.role() + "/" + p.tensor(), k -> new ArrayList<>()).add(p);
      }
      out.put(f.getKey(), List.copyOf(ps));
    }
    for (GlobalTensor g : tensors) {
      for (String role : ROLES) {
        List<Piece> ps = new ArrayList<>(byRoleTensor.getOrDefault(role + "/" + g.name(), List.of()));
        ps.sort(Comparator.comparingLong(Piece::start));
        long next = 0;
        for (Piece p : ps) {
          if (p.start() != next) {
            throw new CheckpointException(where + ": " + role + " of " + g.name() + (p.start() > next
                ? " has no piece holding elements [" + next + ", " + p.start() + ")" : " has overlapping pieces at " + p));
          }
          next = p.end();
        }
        if (next != g.numel()) {
          throw new CheckpointException(where + ": " + role + " of " + g.name() + " has no piece holding elements [" + next
              + ", " + g.numel() + ")");
        }
      }
    }
    return out;
  }

  /**
   * Reads elements {@code [start, end)} of role {@code role} of {@code g} into {@code dst} (1-D, {@code end - start}
   * elements, any device) from the pieces of checkpoint {@code dir} that overlap them, one piece at a time, each
   * verified against its checksum.
   */
  static void read(Path dir, Map<String, List<Piece>> files, Reader reader, String role, GlobalTensor g, long start,
      long end, Tensor dst) {
    if (g.dtype() != DType.F32) throw new CheckpointException("checkpoint " + dir + ": " + g + " is not F32, which this version reads");
    long covered = 0;
    for (Map.Entry<String, List<Piece>> f : files.entrySet()) {
      for (Piece p : f.getValue()) {
        if (!p.role().equals(role) || !p.tensor().equals(g.name()) || p.end() <= start || p.start() >= end) continue;
        float[] data = reader.piece(dir, f.getKey(), p);
        long a = Math.max(start, p.start()), b = Math.min(end, p.end());
        try (Tensor src = Tensor.of(data, data.length); Tensor part = src.slice(0, a - p.start(), b - p.start());
            Tensor to = dst.slice(0, a - start, b - start)) {
          to.copyFrom(part);
        }
        covered += b - a;
      }
    }
    if (covered != end - start) {
      throw new CheckpointException("checkpoint " + dir + ": the pieces of " + role + " " + g.name() + " hold " + covered
          + " of its elements [" + start + ", " + end + ")");
    }
  }

  /** Reads pieces through one open channel per rank file; close it when done. */
  static final class Reader implements AutoCloseable {
    private final Map<String, FileChannel> open = new HashMap<>();

    /** The piece's elements, verified against its checksum. */
    float[] piece(Path dir, String file, Piece p) {
      Path f = dir.resolve(file);
      byte[] bytes;
      try {
        FileChannel ch = open.get(file);
        if (ch == null) {
          ch = FileChannel.open(f, StandardOpenOption.READ);
          open.put(file, ch);
        }
        if (p.byteOffset() + p.bytes() > ch.size()) {
          throw new CheckpointException("checkpoint " + dir + ": " + file + " is too short for piece " + p + " (bytes "
              + p.byteOffset() + " + " + p.bytes() + ", the file has " + ch.size() + "): truncated");
        }
        bytes = readBytes(ch, p.byteOffset(), p.bytes());
      } catch (IOException e) {
        throw new CheckpointException("checkpoint " + dir + ": cannot read " + file + " (piece " + p + "): "
            + FileProblems.reason(e), e);
      }
      String actual = crc(bytes);
      if (!actual.equals(p.crc32c())) {
        throw new CheckpointException("checkpoint " + dir + ": " + file + " piece " + p + " fails its checksum (CRC32C "
            + actual + ", manifest " + p.crc32c() + "): the file is corrupted");
      }
      float[] out = new float[bytes.length / 4];
      ByteBuffer.wrap(bytes).order(ByteOrder.LITTLE_ENDIAN).asFloatBuffer().get(out);
      return out;
    }

    @Override
    public void close() {
      for (FileChannel c : open.values()) {
        try {
          c.close();
        } catch (IOException ignored) {
          // read-only: nothing lost
        }
      }
      open.clear();
    }
  }

  private static byte[] readBytes(FileChannel ch, long offset, long length) throws IOException {
    if (length > Integer.MAX_VALUE - 8) throw new IOException("a piece of " + length + " bytes is larger than one read");
    ByteBuffer buf = ByteBuffer.allocate((int) length);
    while (buf.hasRemaining()) {
      if (ch.read(buf, offset + buf.position()) < 0) throw new IOException("unexpected end of file at byte " + (offset + buf.position()));
    }
    return buf.array();
  }

  private static String crc(byte[] b) {
    CRC32C c = new CRC32C();
    c.update(b);
    return String.format("%08x", c.getValue());
  }
}
