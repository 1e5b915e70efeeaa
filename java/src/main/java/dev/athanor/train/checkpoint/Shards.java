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
 * CRC32C of those bytes. Each piece is also a tensor of the safetensors file ({@code <role>/<tensor>/<start>}, 1-D; a
 * slice's: {@code <role>/<tensor>/<dim>:<lo>-<hi>/<start>}, with the slice's shape when it holds all of it), so a
 * rank file is readable by any safetensors reader. A reader needs only the manifest: it reads the pieces overlapping
 * the elements it needs, one piece at a time (memory: the largest piece and the region read), and copies the overlap; so any
 * number of ranks, with any ZeRO stage, resumes from pieces written by any other.
 *
 * <p><b>Pipeline parallelism</b> fits without a new record: a pipeline stage's ranks write pieces ({@link Part}s) of
 * their stage's tensors only, cut between the stage's data-parallel replicas as above (by their ZeRO 1 shard of the
 * stage's store, or their cut of it); the last stage's copy of a tied embedding is not written (the first stage writes
 * the tensor once). The manifest lists every global tensor of the whole model with its offset in one process's flat
 * layout, so one process, or any other layout, reads it; a stage reads the pieces of its own tensors only.
 *
 * <p><b>Tensor parallelism</b>: a piece may hold part of a <em>slice</em> of its global tensor ({@link Slice}: {@code dim}
 * and {@code slice}, the range {@code [lo, hi)} along {@code dim}), its {@code start}/{@code end} then counting elements
 * in the row-major order of that slice. A tensor-parallel rank's part of a split tensor is one slice per contiguous
 * range of the global tensor it holds (GPT-2's fused {@code c_attn}: three, one in each of q, k and v), as {@code
 * TensorParallel.slices} says; the ranks of one such part in different data-parallel replicas cut it along the same
 * dim into sub-slices, so every piece of a split tensor is a whole slice, stored with the slice's shape (written from a
 * strided view of the rank's tensor, without copying the state). Replicated tensors are cut into flat ranges between
 * all the ranks that hold them. So the manifest always describes global tensors: the pieces of one role of a tensor
 * are either all whole-tensor ranges or all slices along one dim, the slices partitioning that dim, each slice covered
 * by its ranges once; {@link #read} assembles any region (a whole tensor, a flat range of it, or a slice: another
 * tensor-parallel layout's part) from pieces of any layout, one piece at a time.
 */
final class Shards {
  /** The roles a piece holds, as named in the manifest. */
  static final List<String> ROLES = List.of("master", "adam_m", "adam_v");

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
   * A region of a global tensor: {@link #WHOLE} (dim -1), or indices {@code [lo, hi)} along dimension {@code dim} and
   * every index of the other dimensions. Its elements count in the row-major order of the region.
   */
  record Slice(int dim, long lo, long hi) {
    /** The whole tensor. */
    static final Slice WHOLE = new Slice(-1, 0, 0);

    boolean whole() {
      return dim < 0;
    }

    /** Why this slice does not fit a tensor of shape {@code shape}; null when it does. */
    String problem(long[] shape) {
      if (whole()) return dim == -1 && lo == 0 && hi == 0 ? null : "a whole-tensor slice with a range";
      if (dim >= shape.length) return "dim " + dim + " outside a tensor of rank " + shape.length;
      if (lo < 0 || hi <= lo || hi > shape[dim]) {
        return "slice [" + lo + ", " + hi + ") outside [0, " + shape[dim] + ") along dim " + dim;
      }
      return null;
    }

    /** Its shape in a tensor of shape {@code full}. */
    long[] shape(long[] full) {
      long[] s = full.clone();
      if (!whole()) s[dim] = hi - lo;
      return s;
    }

    long numel(long[] full) {
      long n = 1;
      for (long d : shape(full)) n *= d;
      return n;
    }

    @Override
    public String toString() {
      return whole() ? "" : " [" + lo + ", " + hi + ") along dim " + dim;
    }
  }

  /**
   * Elements {@code [start, end)} (row-major) of region {@code slice} of role {@code role} of tensor {@code tensor},
   * stored at {@code byteOffset} ({@code bytes} long, CRC32C {@code crc32c}, 8 hex digits) of its rank file.
   */
  record Piece(String role, String tensor, Slice slice, long start, long end, long byteOffset, long bytes, String crc32c) {
    /** A piece of the whole tensor's elements. */
    Piece(String role, String tensor, long start, long end, long byteOffset, long bytes, String crc32c) {
      this(role, tensor, Slice.WHOLE, start, end, byteOffset, bytes, crc32c);
    }

    /** The piece's name in the rank file (a safetensors tensor). */
    String key() {
      return key(role, tensor, slice, start);
    }

    static String key(String role, String tensor, Slice slice, long start) {
      return role + "/" + tensor + "/" + (slice.whole() ? "" : slice.dim() + ":" + slice.lo() + "-" + slice.hi() + "/") + start;
    }

    /** As the manifest lists it: role, tensor, (dim, slice,) start, end, byte_offset, bytes, crc32c. */
    JsonObject toJson() {
      JsonObject o = new JsonObject();
      o.addProperty("role", role);
      o.addProperty("tensor", tensor);
      if (!slice.whole()) {
        o.addProperty("dim", slice.dim());
        JsonArray a = new JsonArray();
        a.add(slice.lo());
        a.add(slice.hi());
        o.add("slice", a);
      }
      o.addProperty("start", start);
      o.addProperty("end", end);
      o.addProperty("byte_offset", byteOffset);
      o.addProperty("bytes", bytes);
      o.addProperty("crc32c", crc32c);
      return o;
    }

    static Piece fromJson(JsonObject o, String where) {
      for (String k : List.of("role", "tensor", "start", "end", "byte_offset", "bytes", "crc32c")) {
        if (!o.has(k)) throw new CheckpointException(where + ": a piece has no " + k + ": " + o);
      }
      if (o.has("dim") != o.has("slice")) {
        throw new CheckpointException(where + ": a piece has " + (o.has("dim") ? "a dim but no slice" : "a slice but no dim")
            + ": " + o);
      }
      Slice slice = Slice.WHOLE;
      if (o.has("dim")) {
        JsonArray a = o.getAsJsonArray("slice");
        if (a.size() != 2 || o.get("dim").getAsInt() < 0) {
          throw new CheckpointException(where + ": a piece's dim must be >= 0 and its slice [lo, hi): " + o);
        }
        slice = new Slice(o.get("dim").getAsInt(), a.get(0).getAsLong(), a.get(1).getAsLong());
      }
      return new Piece(o.get("role").getAsString(), o.get("tensor").getAsString(), slice, o.get("start").getAsLong(),
          o.get("end").getAsLong(), o.get("byte_offset").getAsLong(), o.get("bytes").getAsLong(), o.get("crc32c").getAsString());
    }

    @Override
    public String toString() {
      return role + " " + tensor + slice + " elements [" + start + ", " + end + ")";
    }
  }

  /**
   * Views of a state by role and part: a tensor (any shape and layout) whose row-major elements are those of {@code
   * part} of its tensor's {@code role}.
   */
  @FunctionalInterface
  interface Views {
    Tensor view(String role, Part part);
  }

  /** The file rank {@code rank} of {@code size} writes. */
  static String fileName(int rank, int size) {
    return "rank-" + rank + "-of-" + size + ".safetensors";
  }

  /**
   * Elements {@code [start, end)} (row-major) of region {@code slice} of global tensor {@code tensor} (an index into the
   * manifest's tensor list) that a rank writes: one piece per role.
   */
  record Part(int tensor, Slice slice, long start, long end) {
    Part {
      if (tensor < 0 || start < 0 || end <= start) {
        throw new IllegalArgumentException("part of tensor " + tensor + ": elements [" + start + ", " + end + ") is empty or negative");
      }
    }

    /** Elements of the whole tensor. */
    Part(int tensor, long start, long end) {
      this(tensor, Slice.WHOLE, start, end);
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
          views.put(Piece.key(role, tensors.get(p.tensor()).name(), p.slice(), p.start()), state.view(role, p));
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
          TensorEntry e = f.entry(Piece.key(role, name, p.slice(), p.start()));
          long off = f.dataOffset() + e.begin(), len = e.end() - e.begin();
          pieces.add(new Piece(role, name, p.slice(), p.start(), p.end(), off, len, crc(readBytes(ch, off, len))));
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
   * The pieces of a version-3 manifest's {@code files} by file name, checked: every piece names a known tensor and role,
   * its slice lies inside the tensor and its range inside the slice; every role of every tensor is covered by pieces
   * exactly once (no gap, no overlap): by whole-tensor ranges, or by slices along one dim that partition it, each slice
   * covered by its ranges.
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
        String slice = g == null ? null : p.slice().problem(g.shape());
        if (slice != null) {
          throw new CheckpointException(where + ": file " + f.getKey() + " has a piece of " + g + " whose " + slice + ": " + p);
        }
        if (g == null || !ROLES.contains(p.role()) || p.start() < 0 || p.end() <= p.start()
            || p.end() > p.slice().numel(g.shape()) || p.bytes() != (p.end() - p.start()) * g.dtype().byteSize()
            || p.byteOffset() < 0) {
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
        List<Piece> ps = byRoleTensor.getOrDefault(role + "/" + g.name(), List.of());
        String what = where + ": " + role + " of " + g.name();
        if (ps.isEmpty() || ps.get(0).slice().whole()) {
          covered(ps, g.numel(), what);
          continue;
        }
        int dim = ps.get(0).slice().dim();
        Map<Slice, List<Piece>> bySlice = new java.util.TreeMap<>(Comparator.comparingLong(Slice::lo).thenComparingLong(Slice::hi));
        for (Piece p : ps) {
          if (p.slice().dim() != dim) {
            throw new CheckpointException(what + " mixes pieces cut along dim " + dim + " with " + p + ": one cut per tensor");
          }
          bySlice.computeIfAbsent(p.slice(), k -> new ArrayList<>()).add(p);
        }
        long next = 0;
        for (Map.Entry<Slice, List<Piece>> e : bySlice.entrySet()) {
          Slice s = e.getKey();
          if (s.lo() != next) {
            throw new CheckpointException(what + (s.lo() > next ? " has no piece holding [" + next + ", " + s.lo()
                + ") along dim " + dim : " has overlapping slices at" + s));
          }
          covered(e.getValue(), s.numel(g.shape()), what + s);
          next = s.hi();
        }
        if (next != g.shape()[dim]) {
          throw new CheckpointException(what + " has no piece holding [" + next + ", " + g.shape()[dim] + ") along dim " + dim);
        }
      }
    }
    return out;
  }

  /** Checks that the ranges of {@code ps} (of one region of {@code n} elements) cover {@code [0, n)} once. */
  private static void covered(List<Piece> pieces, long n, String what) {
    List<Piece> ps = new ArrayList<>(pieces);
    ps.sort(Comparator.comparingLong(Piece::start));
    long next = 0;
    for (Piece p : ps) {
      if (p.start() != next) {
        throw new CheckpointException(what + (p.start() > next ? " has no piece holding elements [" + next + ", " + p.start() + ")"
            : " has overlapping pieces at " + p));
      }
      next = p.end();
    }
    if (next != n) throw new CheckpointException(what + " has no piece holding elements [" + next + ", " + n + ")");
  }

  /**
   * Reads elements {@code [start, end)} of role {@code role} of {@code g} into {@code dst} (1-D, {@code end - start}
   * elements, any device); see the other {@code read}.
   */
  static void read(Path dir, Map<String, List<Piece>> files, Reader reader, String role, GlobalTensor g, long start,
      long end, Tensor dst) {
    read(dir, files, reader, role, g, Slice.WHOLE, start, end, dst);
  }

  /** The most elements {@link #read} assembles in host memory at a time (1 GiB of F32). */
  static final long READ_CHUNK = 1L << 28;

  /**
   * Reads elements {@code [start, end)} (row-major) of region {@code target} of role {@code role} of {@code g} into
   * {@code dst} (1-D, {@code end - start} elements, any device) from the pieces of checkpoint {@code dir} that overlap
   * them, whatever their cut: one piece at a time, each verified against its checksum, through a host buffer of at most
   * {@link #READ_CHUNK} elements of the target.
   */
  static void read(Path dir, Map<String, List<Piece>> files, Reader reader, String role, GlobalTensor g, Slice target,
      long start, long end, Tensor dst) {
    read(dir, files, reader, role, g, target, start, end, dst, READ_CHUNK);
  }

  /** {@link #read} through host buffers of at most {@code chunk} elements. */
  static void read(Path dir, Map<String, List<Piece>> files, Reader reader, String role, GlobalTensor g, Slice target,
      long start, long end, Tensor dst, long chunk) {
    if (chunk < 1 || chunk > Integer.MAX_VALUE - 8) throw new IllegalArgumentException("read chunk " + chunk + " outside [1, 2^31 - 8)");
    if (g.dtype() != DType.F32) throw new CheckpointException("checkpoint " + dir + ": " + g + " is not F32, which this version reads");
    String problem = target.problem(g.shape());
    if (problem != null || start < 0 || end <= start || end > target.numel(g.shape())) {
      throw new IllegalArgumentException("cannot read elements [" + start + ", " + end + ") of" + target + " of " + g
          + (problem != null ? ": " + problem : ""));
    }
    for (long a = start; a < end; a += chunk) {
      long b = Math.min(end, a + chunk);
      float[] out = new float[(int) (b - a)];
      long covered = 0;
      for (Map.Entry<String, List<Piece>> f : files.entrySet()) {
        for (Piece p : f.getValue()) {
          if (!p.role().equals(role) || !p.tensor().equals(g.name())) continue;
          List<long[]> runs = overlap(g.shape(), p.slice(), p.start(), p.end(), target, a, b);
          if (runs.isEmpty()) continue;
          float[] data = reader.piece(dir, f.getKey(), p);
          for (long[] r : runs) {
            System.arraycopy(data, (int) r[0], out, (int) r[1], (int) r[2]);
            covered += r[2];
          }
        }
      }
      if (covered != b - a) {
        throw new CheckpointException("checkpoint " + dir + ": the pieces of " + role + " " + g.name() + " hold " + covered
            + " of its elements [" + a + ", " + b + ")" + target);
      }
      try (Tensor to = dst.slice(0, a - start, b - start)) {
        to.copyFrom(out);
      }
    }
  }

  /**
   * Where a region's elements lie in its tensor's row-major order: element {@code k} of the region is element {@code
   * (k / rowLength) × tensorRow + offset + k mod rowLength} of the tensor.
   */
  private record Rows(long rowLength, long tensorRow, long offset) {
    static Rows of(long[] shape, Slice s) {
      long numel = 1, inner = 1;
      for (long d : shape) numel *= d;
      if (s.whole()) return new Rows(numel, numel, 0);
      for (int i = s.dim() + 1; i < shape.length; i++) inner *= shape[i];
      return new Rows((s.hi() - s.lo()) * inner, shape[s.dim()] * inner, s.lo() * inner);
    }
  }

  /**
   * The elements that elements {@code [ps, pe)} of region {@code from} and elements {@code [ts, te)} of region {@code to}
   * of a tensor of shape {@code shape} share, as runs {@code {offset in [ps, pe), offset in [ts, te), length}}.
   */
  static List<long[]> overlap(long[] shape, Slice from, long ps, long pe, Slice to, long ts, long te) {
    Rows a = Rows.of(shape, from), b = Rows.of(shape, to);
    List<long[]> runs = new ArrayList<>();
    for (long o = ps / a.rowLength(); o * a.rowLength() < pe; o++) {
      long k0 = Math.max(ps, o * a.rowLength()), k1 = Math.min(pe, (o + 1) * a.rowLength());
      long g0 = o * a.tensorRow() + a.offset() + (k0 - o * a.rowLength()), g1 = g0 + (k1 - k0);  // tensor elements [g0, g1)
      for (long q = g0 / b.tensorRow(); q * b.tensorRow() < g1; q++) {
        long x0 = Math.max(g0, q * b.tensorRow() + b.offset()), x1 = Math.min(g1, q * b.tensorRow() + b.offset() + b.rowLength());
        if (x1 <= x0) continue;
        long j0 = q * b.rowLength() + (x0 - q * b.tensorRow() - b.offset());  // element of region `to`
        long y0 = Math.max(j0, ts), y1 = Math.min(j0 + (x1 - x0), te);
        if (y1 <= y0) continue;
        runs.add(new long[] {k0 - ps + (x0 - g0) + (y0 - j0), y0 - ts, y1 - y0});
      }
    }
    return runs;
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
