package dev.athanor.io.safetensors;

import dev.athanor.io.FileProblems;
import dev.athanor.runtime.Device;
import dev.athanor.tensor.DType;
import dev.athanor.tensor.Tensor;
import java.io.EOFException;
import java.io.IOException;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.channels.FileChannel;
import java.nio.file.Files;
import java.nio.file.NoSuchFileException;
import java.nio.file.Path;
import java.nio.file.StandardOpenOption;
import java.util.Arrays;
import java.util.Map;
import java.util.Objects;
import java.util.concurrent.atomic.AtomicBoolean;

/**
 * An open safetensors file (the format of Hugging Face's {@code safetensors} library), validated up front.
 *
 * <p>{@link #open} reads and checks the whole header before returning: the header length against the file
 * size, the JSON, every dtype, shape and {@code data_offsets} pair, that each tensor's byte length is
 * {@code numel * element size}, that every range lies inside the data section and that no two ranges
 * overlap. Each problem is reported as a {@link SafetensorsException} naming the file.
 *
 * <p>Tensors are read with positional reads straight into the destination's host memory (no intermediate
 * buffer when the dtypes match), so files and tensors larger than 2 GiB work. The file is not memory mapped:
 * a file truncated while open then gives an "unexpected end of file" error rather than a fault.
 *
 * <p>Reading supports F32, F16, BF16 and I32 as they are, I64 as I32 (every value must fit) and F64 as F32
 * (rounded to nearest); the other dtypes a header may name (U8, I8, I16, U16, U32, U64, BOOL, F8_E4M3,
 * F8_E5M2) are listed in {@link #entries()} but reading them fails with "unsupported dtype".
 *
 * <p>Thread-safety: reads may run concurrently from several threads; {@link #close()} is idempotent, and
 * reading after it throws {@link IllegalStateException}.
 */
@SuppressWarnings("restricted") // MemorySegment.reinterpret over host tensors kept open by the caller
public final class SafetensorsFile implements AutoCloseable {
  /** The largest header accepted, in bytes. */
  public static final long MAX_HEADER_BYTES = Header.MAX_HEADER_BYTES;

  private static final int IO_CHUNK = 1 << 30; // a ByteBuffer view covers at most 2^31-1 bytes
  private static final int CONVERT_CHUNK = 8 << 20;

  private final Path path;
  private final FileChannel channel;
  private final long dataStart;
  private final Header header;
  private final AtomicBoolean closed = new AtomicBoolean();

  private SafetensorsFile(Path path, FileChannel channel, long dataStart, Header header) {
    this.path = path;
    this.channel = channel;
    this.dataStart = dataStart;
    this.header = header;
  }

  /**
   * Opens and validates {@code file}.
   *
   * @throws SafetensorsException naming the file when it is missing, unreadable or malformed
   */
  public static SafetensorsFile open(Path file) {
    Objects.requireNonNull(file, "file");
    requireLittleEndianHost();
    String src = file.toString();
    String problem = FileProblems.notRegularFile(file);
    if (problem != null && Files.isDirectory(file)) throw Header.fail(src, "is a directory, not a safetensors file");
    if (problem != null && !problem.equals("does not exist")) throw new SafetensorsException(src + " " + problem);
    FileChannel ch;
    try {
      ch = FileChannel.open(file, StandardOpenOption.READ);
    } catch (NoSuchFileException e) {
      throw Header.fail(src, "no such file");
    } catch (IOException | SecurityException e) {
      throw new SafetensorsException(src + ": cannot open: " + FileProblems.reason(e), e);
    }
    try {
      long size = ch.size();
      if (size < 8) {
        throw Header.fail(src, "file is " + size + " bytes, shorter than the 8-byte header length (not a safetensors file?)");
      }
      ByteBuffer lenBuf = ByteBuffer.allocate(8).order(ByteOrder.LITTLE_ENDIAN);
      readFully(ch, lenBuf, 0, src);
      long n = lenBuf.getLong(0);
      if (Long.compareUnsigned(n, MAX_HEADER_BYTES) > 0) {
        throw Header.fail(src, "header length " + Long.toUnsignedString(n) + " is absurd (limit " + MAX_HEADER_BYTES
            + " bytes; not a safetensors file?)");
      }
      if (n > size - 8) {
        throw Header.fail(src, "header length " + n + " goes beyond the end of the file (" + size
            + " bytes; truncated or not a safetensors file?)");
      }
      ByteBuffer hb = ByteBuffer.allocate((int) n);
      readFully(ch, hb, 8, src);
      Header h = Header.parse(src, hb.array(), size - 8 - n);
      return new SafetensorsFile(file, ch, 8 + n, h);
    } catch (IOException e) {
      closeQuietly(ch);
      throw new SafetensorsException(src + ": cannot read: " + FileProblems.reason(e), e);
    } catch (RuntimeException e) {
      closeQuietly(ch);
      throw e;
    }
  }

  /** The file this was opened from. */
  public Path path() {
    return path;
  }

  /** Every tensor of the file, ordered by offset (unmodifiable). */
  public Map<String, TensorEntry> entries() {
    return header.entries();
  }

  /** The {@code __metadata__} map (empty when absent; unmodifiable). */
  public Map<String, String> metadata() {
    return header.metadata();
  }

  /** Whether the file holds a tensor called {@code name}. */
  public boolean contains(String name) {
    return header.entries().containsKey(name);
  }

  /** The entry of tensor {@code name}; throws listing some known names when there is none. */
  public TensorEntry entry(String name) {
    Objects.requireNonNull(name, "name");
    TensorEntry e = header.entries().get(name);
    if (e == null) {
      throw new IllegalArgumentException(path + ": no tensor \"" + name + "\"; it holds "
          + Header.sample(header.entries().keySet(), 8));
    }
    return e;
  }

  /** The absolute file offset of the data section (8 + header length). */
  public long dataOffset() {
    return dataStart;
  }

  /** Tensor {@code name} as a new host tensor on {@link Device#CPU} (I64 read as I32, F64 as F32). */
  public Tensor read(String name) {
    checkOpen();
    TensorEntry e = entry(name);
    return readNatural(e, naturalOf(e));
  }

  /**
   * Tensor {@code name} as a new host tensor of {@code dtype}: floating types convert among themselves
   * (rounding to nearest even), I32 converts to floating types; floating data is never converted to I32.
   */
  public Tensor read(String name, DType dtype) {
    Objects.requireNonNull(dtype, "dtype");
    checkOpen();
    TensorEntry e = entry(name);
    DType nat = naturalOf(e);
    Conversions.check(nat, dtype, where(e));
    Tensor t = readNatural(e, nat);
    if (nat == dtype) return t;
    try (t) {
      return Conversions.convert(t, dtype);
    }
  }

  /**
   * Reads tensor {@code name} into {@code dst}, which must have the same number of elements (its shape may
   * differ, e.g. a flat buffer) and any dtype the data converts to (see {@link #read(String, DType)}).
   * Contiguous host tensors of the file's dtype are filled directly; other destinations (strided, CUDA) go
   * through a host staging tensor.
   */
  public void readInto(String name, Tensor dst) {
    Objects.requireNonNull(dst, "dst");
    checkOpen();
    dst.checkOpen();
    TensorEntry e = entry(name);
    if (dst.numel() != e.numel()) {
      throw new IllegalArgumentException(where(e) + " has " + e.numel() + " elements (shape "
          + Arrays.toString(e.shape()) + ") but the destination " + dst + " has " + dst.numel());
    }
    DType nat = naturalOf(e);
    Conversions.check(nat, dst.dtype(), where(e));
    if (nat == dst.dtype() && dst.tier().isHostAddressable() && dst.isContiguous()) {
      fillNatural(e, nat, dst);
      return;
    }
    try (Tensor t = readNatural(e, nat); Tensor flat = t.view(dst.shape())) {
      if (nat == dst.dtype()) {
        dst.copyFrom(flat);
      } else if (dst.tier().isHostAddressable() && dst.isContiguous()) {
        Conversions.convertInto(flat, dst);
      } else {
        try (Tensor c = Conversions.convert(flat, dst.dtype())) {
          dst.copyFrom(c);
        }
      }
    }
  }

  /** Closes the file. Idempotent. */
  @Override
  public void close() {
    if (closed.compareAndSet(false, true)) closeQuietly(channel);
  }

  @Override
  public String toString() {
    return "SafetensorsFile(" + path + ", " + header.entries().size() + " tensors" + (closed.get() ? ", closed)" : ")");
  }

  // ------------------------------------------------------------------ internals

  private String where(TensorEntry e) {
    return path + ": tensor \"" + e.name() + "\" (" + e.dtype() + ")";
  }

  private DType naturalOf(TensorEntry e) {
    DType nat = StDType.byName(e.dtype()).natural();
    if (nat == null) {
      throw new SafetensorsException(where(e) + ": unsupported dtype " + e.dtype() + " for reading; supported: "
          + StDType.readable());
    }
    return nat;
  }

  private Tensor readNatural(TensorEntry e, DType nat) {
    Tensor t = Tensor.empty(nat, Device.CPU, e.shape());
    try {
      fillNatural(e, nat, t);
      return t;
    } catch (RuntimeException ex) {
      t.close();
      throw ex;
    }
  }

  /** Fills the contiguous host tensor {@code dst} (dtype {@code nat}, numel of e) with e's data. */
  private void fillNatural(TensorEntry e, DType nat, Tensor dst) {
    long bytes = e.byteLength();
    if (bytes == 0) return;
    StDType st = StDType.byName(e.dtype());
    long outBytes = e.numel() * nat.byteSize();
    MemorySegment out = MemorySegment.ofAddress(dst.address()).reinterpret(outBytes);
    try {
      if (st.isDirect()) {
        for (long off = 0; off < bytes; off += IO_CHUNK) {
          long len = Math.min(IO_CHUNK, bytes - off);
          readFully(channel, out.asSlice(off, len).asByteBuffer(), dataStart + e.begin() + off, path.toString());
        }
        return;
      }
      ByteBuffer buf = ByteBuffer.allocateDirect((int) Math.min(CONVERT_CHUNK, bytes)).order(ByteOrder.LITTLE_ENDIAN);
      long done = 0; // elements
      for (long off = 0; off < bytes; ) {
        int len = (int) Math.min(buf.capacity(), bytes - off);
        buf.clear().limit(len);
        readFully(channel, buf, dataStart + e.begin() + off, path.toString());
        int count = len / 8;
        for (int i = 0; i < count; i++) {
          if (st == StDType.I64) {
            long v = buf.getLong(i * 8);
            if (v < Integer.MIN_VALUE || v > Integer.MAX_VALUE) {
              throw new SafetensorsException(where(e) + ": value " + v + " at element " + (done + i)
                  + " does not fit in I32, so the tensor cannot be read as I32");
            }
            out.setAtIndex(ValueLayout.JAVA_INT, done + i, (int) v);
          } else { // F64 -> F32, round to nearest even (Java's narrowing conversion)
            out.setAtIndex(ValueLayout.JAVA_FLOAT, done + i, (float) buf.getDouble(i * 8));
          }
        }
        done += count;
        off += len;
      }
    } catch (IOException ex) {
      if (closed.get()) throw new IllegalStateException(this + " was closed while reading \"" + e.name() + "\"", ex);
      throw new SafetensorsException(where(e) + ": cannot read: " + FileProblems.reason(ex), ex);
    }
  }

  private void checkOpen() {
    if (closed.get()) throw new IllegalStateException(this + " was used after close()");
  }

  private static void readFully(FileChannel ch, ByteBuffer buf, long position, String src) throws IOException {
    long pos = position;
    while (buf.hasRemaining()) {
      int r = ch.read(buf, pos);
      if (r < 0) {
        throw new EOFException(src + ": unexpected end of file at byte " + pos + " (file truncated while open?)");
      }
      pos += r;
    }
  }

  private static void closeQuietly(FileChannel ch) {
    try {
      ch.close();
    } catch (IOException ignored) {
      // nothing useful to do
    }
  }

  static void requireLittleEndianHost() {
    if (ByteOrder.nativeOrder() != ByteOrder.LITTLE_ENDIAN) {
      throw new UnsupportedOperationException("safetensors I/O needs a little-endian host, this one is "
          + ByteOrder.nativeOrder());
    }
  }
}
