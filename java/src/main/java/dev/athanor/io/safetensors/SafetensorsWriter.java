package dev.athanor.io.safetensors;

import dev.athanor.io.AtomicFiles;
import dev.athanor.io.FileProblems;
import com.google.gson.stream.JsonWriter;
import dev.athanor.runtime.Device;
import dev.athanor.tensor.DType;
import dev.athanor.tensor.Tensor;
import java.io.IOException;
import java.io.StringWriter;
import java.io.UncheckedIOException;
import java.lang.foreign.MemorySegment;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.channels.FileChannel;
import java.nio.charset.StandardCharsets;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.Objects;

/**
 * Writes safetensors files.
 *
 * <p>The header lists {@code __metadata__} first (when not empty), then the tensors in the map's iteration
 * order with contiguous {@code data_offsets}; it is padded with spaces so that the data section starts at a
 * multiple of 8 bytes, as the reference implementation does. Tensors may live anywhere (host, CUDA, DISK) and
 * have any layout: non-contiguous and non-host tensors are copied to a contiguous host tensor first, one at a
 * time.
 *
 * <p>The file is replaced atomically (see {@link AtomicFiles}): readers see the old file or the complete new
 * one, never a partial file under the final name.
 */
@SuppressWarnings("restricted") // MemorySegment.reinterpret over host tensors kept open while written
public final class SafetensorsWriter {
  private static final int IO_CHUNK = 1 << 30;

  private SafetensorsWriter() {}

  /** Writes {@code tensors} (in iteration order) with {@code metadata} (may be null or empty) to {@code file}. */
  public static void write(Path file, Map<String, Tensor> tensors, Map<String, String> metadata) {
    write(file, tensors, metadata, null);
  }

  /**
   * Writes {@code tensors} converted to {@code dtype} (null: each keeps its own dtype). Conversions happen one
   * tensor at a time while writing; floating tensors cannot be written as I32.
   *
   * @throws IllegalArgumentException for bad names, closed tensors or impossible conversions (nothing is
   *     written)
   * @throws SafetensorsException naming the file when writing fails (the target is then unchanged)
   */
  public static void write(Path file, Map<String, Tensor> tensors, Map<String, String> metadata, DType dtype) {
    Objects.requireNonNull(file, "file");
    Objects.requireNonNull(tensors, "tensors");
    SafetensorsFile.requireLittleEndianHost();
    List<Item> items = plan(file, tensors, dtype);
    byte[] header = header(file, items, metadata == null ? Map.of() : metadata);
    try {
      AtomicFiles.write(file, ch -> {
        ByteBuffer len = ByteBuffer.allocate(8).order(ByteOrder.LITTLE_ENDIAN).putLong(0, header.length);
        AtomicFiles.writeFully(ch, len);
        AtomicFiles.writeFully(ch, ByteBuffer.wrap(header));
        for (Item it : items) writeData(ch, it);
      });
    } catch (IOException e) {
      throw new SafetensorsException(file + ": cannot write: " + FileProblems.reason(e), e);
    } catch (UncheckedIOException e) {
      throw new SafetensorsException(file + ": cannot write: " + FileProblems.reason(e.getCause()), e.getCause());
    }
  }

  private record Item(String name, Tensor tensor, DType dtype, long begin, long end) {}

  private static List<Item> plan(Path file, Map<String, Tensor> tensors, DType dtype) {
    List<Item> items = new ArrayList<>(tensors.size());
    long off = 0;
    for (Map.Entry<String, Tensor> e : tensors.entrySet()) {
      String name = e.getKey();
      Tensor t = e.getValue();
      if (name == null) throw new IllegalArgumentException(file + ": a tensor name is null");
      if (name.equals(Header.METADATA_KEY)) {
        throw new IllegalArgumentException(file + ": \"" + Header.METADATA_KEY + "\" is reserved and cannot name a tensor");
      }
      if (t == null) throw new IllegalArgumentException(file + ": tensor \"" + name + "\" is null");
      t.checkOpen();
      DType out = dtype == null ? t.dtype() : dtype;
      Conversions.check(t.dtype(), out, file + ": tensor \"" + name + "\"");
      long bytes = Math.multiplyExact(t.numel(), (long) out.byteSize());
      items.add(new Item(name, t, out, off, off + bytes));
      off += bytes;
    }
    return items;
  }

  private static byte[] header(Path file, List<Item> items, Map<String, String> metadata) {
    StringWriter sw = new StringWriter();
    try (JsonWriter w = new JsonWriter(sw)) {
      w.setHtmlSafe(false);
      w.beginObject();
      if (!metadata.isEmpty()) {
        w.name(Header.METADATA_KEY).beginObject();
        for (Map.Entry<String, String> m : metadata.entrySet()) {
          if (m.getKey() == null || m.getValue() == null) {
            throw new IllegalArgumentException(file + ": metadata keys and values must not be null: " + metadata);
          }
          w.name(m.getKey()).value(m.getValue());
        }
        w.endObject();
      }
      for (Item it : items) {
        w.name(it.name).beginObject();
        w.name("dtype").value(StDType.of(it.dtype).name());
        w.name("shape").beginArray();
        for (long s : it.tensor.shape()) w.value(s);
        w.endArray();
        w.name("data_offsets").beginArray().value(it.begin).value(it.end).endArray();
        w.endObject();
      }
      w.endObject();
    } catch (IOException e) {
      throw new UncheckedIOException(e); // a StringWriter does not fail
    }
    byte[] json = sw.toString().getBytes(StandardCharsets.UTF_8);
    int padded = (json.length + 7) & ~7;
    byte[] out = new byte[padded];
    System.arraycopy(json, 0, out, 0, json.length);
    for (int i = json.length; i < padded; i++) out[i] = ' ';
    return out;
  }

  private static void writeData(FileChannel ch, Item it) throws IOException {
    long bytes = it.end - it.begin;
    if (bytes == 0) return;
    try (Tensor host = it.tensor.to(Device.CPU);
        Tensor data = Conversions.convert(host, it.dtype)) {
      MemorySegment seg = MemorySegment.ofAddress(data.address()).reinterpret(bytes);
      for (long off = 0; off < bytes; off += IO_CHUNK) {
        AtomicFiles.writeFully(ch, seg.asSlice(off, Math.min(IO_CHUNK, bytes - off)).asByteBuffer());
      }
    }
  }
}
