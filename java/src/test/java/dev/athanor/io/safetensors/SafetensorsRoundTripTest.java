package dev.athanor.io.safetensors;

import dev.athanor.io.AtomicFiles;
import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.athanor.runtime.Device;
import dev.athanor.tensor.DType;
import dev.athanor.tensor.HalfFloats;
import dev.athanor.tensor.Scope;
import dev.athanor.tensor.Tensor;
import java.io.IOException;
import java.io.RandomAccessFile;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.nio.ByteBuffer;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Random;
import java.util.stream.Stream;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/** Writing and reading safetensors files: every dtype, awkward shapes, conversions, layout of the header. */
@SuppressWarnings({"restricted", "try"})
class SafetensorsRoundTripTest {
  @TempDir Path dir;

  /** Random data of {@code dtype} (special floats included) as a host tensor. */
  static Tensor random(DType dtype, Random rnd, long... shape) {
    Tensor t = Tensor.empty(dtype, Device.CPU, shape);
    MemorySegment m = MemorySegment.ofAddress(t.address()).reinterpret(t.byteSize());
    for (long i = 0; i < t.numel(); i++) {
      switch (dtype) {
        case F32 -> {
          float[] special = {Float.NaN, -0f, Float.POSITIVE_INFINITY, Float.MIN_VALUE, -Float.MAX_VALUE};
          float v = i < special.length ? special[(int) i] : (float) rnd.nextGaussian();
          m.setAtIndex(ValueLayout.JAVA_FLOAT, i, v);
        }
        case BF16, F16 -> m.setAtIndex(ValueLayout.JAVA_SHORT, i, (short) rnd.nextInt());
        case I32 -> m.setAtIndex(ValueLayout.JAVA_INT, i, i == 0 ? Integer.MIN_VALUE : rnd.nextInt());
      }
    }
    return t;
  }

  /** The raw bytes of a contiguous host tensor. */
  static byte[] bytes(Tensor t) {
    if (t.byteSize() == 0) return new byte[0];
    return MemorySegment.ofAddress(t.address()).reinterpret(t.byteSize()).toArray(ValueLayout.JAVA_BYTE);
  }

  @Test
  void everyDtypeAndShapeRoundTripsBitExactly() throws IOException {
    Random rnd = new Random(7);
    long[][] shapes = {{}, {0}, {1}, {3, 5}, {2, 0, 3}, {2, 3, 4}, {1, 1, 1, 7}};
    try (Scope s = Scope.open()) {
      Map<String, Tensor> tensors = new LinkedHashMap<>();
      for (DType d : DType.values()) {
        for (long[] shape : shapes) tensors.put(d + "/" + shape.length + "/" + tensors.size(), random(d, rnd, shape));
      }
      Path f = dir.resolve("all.safetensors");
      SafetensorsWriter.write(f, tensors, Map.of("format", "pt", "note", "ünïcode ✓"));
      try (SafetensorsFile sf = SafetensorsFile.open(f)) {
        assertEquals(Map.of("format", "pt", "note", "ünïcode ✓"), sf.metadata());
        assertEquals(new ArrayList<>(tensors.keySet()), new ArrayList<>(sf.entries().keySet()), "map order kept");
        long expectBegin = 0;
        for (Map.Entry<String, Tensor> e : tensors.entrySet()) {
          TensorEntry en = sf.entry(e.getKey());
          assertEquals(e.getValue().dtype().name(), en.dtype());
          assertArrayEquals(e.getValue().shape(), en.shape());
          assertEquals(expectBegin, en.begin(), "contiguous offsets");
          expectBegin = en.end();
          try (Tensor r = sf.read(e.getKey())) {
            assertEquals(Device.CPU, r.device());
            assertEquals(e.getValue().dtype(), r.dtype());
            assertArrayEquals(e.getValue().shape(), r.shape());
            assertArrayEquals(bytes(e.getValue()), bytes(r), e.getKey());
          }
        }
        assertEquals(Files.size(f), sf.dataOffset() + expectBegin, "no trailing bytes");
      }
    }
  }

  @Test
  void dataSectionStartsEightByteAlignedAndHeaderIsPaddedWithSpaces() throws IOException {
    try (Scope s = Scope.open()) {
      for (int len = 1; len <= 17; len++) {
        Path f = dir.resolve("a" + len + ".safetensors");
        SafetensorsWriter.write(f, Map.of("x".repeat(len), Tensor.of(new float[] {1, 2, 3})), null);
        long n = RawFiles.headerLength(f);
        assertEquals(0, (8 + n) % 8, "data offset of name length " + len);
        String h = RawFiles.headerText(f);
        assertEquals(h.strip().length(), h.stripTrailing().length());
        assertTrue(h.stripTrailing().endsWith("}"));
        assertTrue(h.length() - h.stripTrailing().length() < 8, "at most 7 spaces of padding");
        for (char c : h.substring(h.stripTrailing().length()).toCharArray()) assertEquals(' ', c);
        assertFalse(h.contains("__metadata__"), "no metadata key without metadata");
        try (SafetensorsFile sf = SafetensorsFile.open(f); Tensor r = sf.read("x".repeat(len))) {
          assertArrayEquals(new float[] {1, 2, 3}, r.toFloatArray());
        }
      }
    }
  }

  @Test
  void headerMatchesTheReferenceLayout() throws IOException {
    try (Scope s = Scope.open()) {
      Path f = dir.resolve("ref.safetensors");
      Map<String, Tensor> m = new LinkedHashMap<>();
      m.put("b", Tensor.of(new float[] {1, 2, 3, 4, 5, 6}, 2, 3));
      m.put("a", Tensor.of(new int[] {7}));
      SafetensorsWriter.write(f, m, Map.of("format", "pt"));
      assertEquals("{\"__metadata__\":{\"format\":\"pt\"},\"b\":{\"dtype\":\"F32\",\"shape\":[2,3],\"data_offsets\":[0,24]},"
          + "\"a\":{\"dtype\":\"I32\",\"shape\":[1],\"data_offsets\":[24,28]}}", RawFiles.headerText(f).stripTrailing());
      byte[] all = Files.readAllBytes(f);
      int data = (int) (8 + RawFiles.headerLength(f));
      assertEquals(data + 28, all.length);
      assertEquals(1f, ByteBuffer.wrap(all, data, 4).order(java.nio.ByteOrder.LITTLE_ENDIAN).getFloat());
      assertEquals(7, ByteBuffer.wrap(all, data + 24, 4).order(java.nio.ByteOrder.LITTLE_ENDIAN).getInt());
    }
  }

  @Test
  void nonContiguousTensorsAreWrittenInLogicalOrder() throws IOException {
    try (Scope s = Scope.open()) {
      Tensor base = Tensor.of(new float[] {1, 2, 3, 4, 5, 6}, 2, 3);
      Tensor t = base.transpose(0, 1); // [[1,4],[2,5],[3,6]]
      Tensor sliced = base.slice(1, 1, 3); // [[2,3],[5,6]]
      Path f = dir.resolve("nc.safetensors");
      Map<String, Tensor> m = new LinkedHashMap<>();
      m.put("t", t);
      m.put("s", sliced);
      SafetensorsWriter.write(f, m, Map.of());
      try (SafetensorsFile sf = SafetensorsFile.open(f)) {
        assertArrayEquals(new long[] {3, 2}, sf.entry("t").shape());
        assertArrayEquals(new float[] {1, 4, 2, 5, 3, 6}, sf.read("t").toFloatArray());
        assertArrayEquals(new float[] {2, 3, 5, 6}, sf.read("s").toFloatArray());
      }
    }
  }

  @Test
  void writeConvertsToTheRequestedDtype() throws IOException {
    float[] v = {1.00390625f, -3.14159f, 65504f, 1e-8f, 0.1f};
    try (Scope s = Scope.open()) {
      Map<String, Tensor> m = Map.of("w", Tensor.of(v));
      for (DType d : new DType[] {DType.BF16, DType.F16}) {
        Path f = dir.resolve(d + ".safetensors");
        SafetensorsWriter.write(f, m, null, d);
        try (SafetensorsFile sf = SafetensorsFile.open(f)) {
          assertEquals(d.name(), sf.entry("w").dtype());
          float[] got = sf.read("w", DType.F32).toFloatArray();
          for (int i = 0; i < v.length; i++) assertEquals(HalfFloats.round(v[i], d), got[i], d + " element " + i);
        }
      }
      Path ints = dir.resolve("ints.safetensors");
      SafetensorsWriter.write(ints, Map.of("i", Tensor.of(new int[] {-5, 0, 1 << 20})), null, DType.F32);
      try (SafetensorsFile sf = SafetensorsFile.open(ints)) {
        assertArrayEquals(new float[] {-5, 0, 1 << 20}, sf.read("i").toFloatArray());
      }
      IllegalArgumentException e = assertThrows(IllegalArgumentException.class,
          () -> SafetensorsWriter.write(dir.resolve("bad.safetensors"), m, null, DType.I32));
      assertTrue(e.getMessage().contains("\"w\"") && e.getMessage().contains("I32"), e.getMessage());
      assertFalse(Files.exists(dir.resolve("bad.safetensors")));
    }
  }

  @Test
  void readConvertsBetweenDtypes() throws IOException {
    try (Scope s = Scope.open()) {
      float[] v = {0.5f, -2.75f, 1e-3f, 12345.678f};
      Map<String, Tensor> m = new LinkedHashMap<>();
      m.put("f", Tensor.of(v, 2, 2));
      m.put("i", Tensor.of(new int[] {3, -4}));
      Path f = dir.resolve("c.safetensors");
      SafetensorsWriter.write(f, m, null);
      try (SafetensorsFile sf = SafetensorsFile.open(f)) {
        for (DType d : new DType[] {DType.BF16, DType.F16, DType.F32}) {
          Tensor r = sf.read("f", d);
          assertEquals(d, r.dtype());
          assertArrayEquals(new long[] {2, 2}, r.shape());
          float[] got = r.toFloatArray();
          for (int i = 0; i < v.length; i++) assertEquals(HalfFloats.round(v[i], d), got[i]);
        }
        assertArrayEquals(new float[] {3, -4}, sf.read("i", DType.F32).toFloatArray());
        assertArrayEquals(new float[] {3, -4}, sf.read("i", DType.BF16).toFloatArray());
        IllegalArgumentException e = assertThrows(IllegalArgumentException.class, () -> sf.read("f", DType.I32));
        assertTrue(e.getMessage().contains(f.toString()) && e.getMessage().contains("\"f\""), e.getMessage());
      }
    }
  }

  @Test
  void readIntoFillsFlatStridedAndConvertingDestinations() throws IOException {
    try (Scope s = Scope.open()) {
      float[] v = {1, 2, 3, 4, 5, 6};
      Path f = dir.resolve("r.safetensors");
      SafetensorsWriter.write(f, Map.of("x", Tensor.of(v, 2, 3)), null);
      try (SafetensorsFile sf = SafetensorsFile.open(f)) {
        Tensor flat = Tensor.zeros(DType.F32, Device.CPU, 6);
        sf.readInto("x", flat);
        assertArrayEquals(v, flat.toFloatArray());

        Tensor big = Tensor.zeros(DType.F32, Device.CPU, 3, 2);
        Tensor strided = big.transpose(0, 1); // shape [2,3], not contiguous
        sf.readInto("x", strided);
        assertArrayEquals(v, strided.toFloatArray());
        assertArrayEquals(new float[] {1, 4, 2, 5, 3, 6}, big.toFloatArray());

        Tensor half = Tensor.zeros(DType.BF16, Device.CPU, 2, 3);
        sf.readInto("x", half);
        assertArrayEquals(v, half.toFloatArray());
        Tensor halfStrided = Tensor.zeros(DType.F16, Device.CPU, 3, 2).transpose(0, 1);
        sf.readInto("x", halfStrided);
        assertArrayEquals(v, halfStrided.toFloatArray());

        IllegalArgumentException e = assertThrows(IllegalArgumentException.class,
            () -> sf.readInto("x", Tensor.zeros(DType.F32, Device.CPU, 5)));
        assertTrue(e.getMessage().contains("6 elements") && e.getMessage().contains(f.toString()), e.getMessage());
      }
    }
  }

  @Test
  void wideIntegerAndDoubleTensorsNarrowOnRead() throws IOException {
    String header = "{\"i\":{\"dtype\":\"I64\",\"shape\":[3],\"data_offsets\":[0,24]},"
        + "\"d\":{\"dtype\":\"F64\",\"shape\":[2],\"data_offsets\":[24,40]},"
        + "\"big\":{\"dtype\":\"I64\",\"shape\":[2],\"data_offsets\":[40,56]},"
        + "\"u\":{\"dtype\":\"U8\",\"shape\":[2,2],\"data_offsets\":[56,60]}}";
    ByteBuffer data = ByteBuffer.allocate(60);
    data.put(RawFiles.longs(-7, 0, Integer.MAX_VALUE)).put(RawFiles.doubles(0.1, -1e300)).put(RawFiles.longs(1, 3_000_000_000L));
    Path f = RawFiles.write(dir.resolve("wide.safetensors"), header, data.array());
    try (Scope s = Scope.open(); SafetensorsFile sf = SafetensorsFile.open(f)) {
      Tensor i = sf.read("i");
      assertEquals(DType.I32, i.dtype());
      assertArrayEquals(new int[] {-7, 0, Integer.MAX_VALUE}, i.toIntArray());
      assertArrayEquals(new float[] {-7, 0, Integer.MAX_VALUE}, sf.read("i", DType.F32).toFloatArray());
      Tensor d = sf.read("d");
      assertEquals(DType.F32, d.dtype());
      assertArrayEquals(new float[] {0.1f, Float.NEGATIVE_INFINITY}, d.toFloatArray());
      SafetensorsException e = assertThrows(SafetensorsException.class, () -> sf.read("big"));
      assertTrue(e.getMessage().contains("3000000000") && e.getMessage().contains("\"big\"")
          && e.getMessage().contains(f.toString()), e.getMessage());
      assertEquals("U8", sf.entry("u").dtype());
      SafetensorsException u = assertThrows(SafetensorsException.class, () -> sf.read("u"));
      assertTrue(u.getMessage().contains("unsupported dtype U8") && u.getMessage().contains(f.toString()), u.getMessage());
      assertThrows(SafetensorsException.class, () -> sf.readInto("u", Tensor.zeros(DType.F32, Device.CPU, 4)));
    }
  }

  @Test
  void wideTensorsLargerThanTheConversionChunkNarrowCorrectly() throws IOException {
    int n = 1_100_001; // 8.8 MB of I64: more than one 8 MiB conversion chunk, and an odd count
    java.nio.ByteBuffer data = java.nio.ByteBuffer.allocate(8 * n + 8 * n).order(java.nio.ByteOrder.LITTLE_ENDIAN);
    for (int i = 0; i < n; i++) data.putLong(i * 3L - 1_000_000L);
    for (int i = 0; i < n; i++) data.putDouble(i * 0.5 + 0.1);
    String header = "{\"i\":{\"dtype\":\"I64\",\"shape\":[" + n + "],\"data_offsets\":[0," + 8L * n + "]},"
        + "\"d\":{\"dtype\":\"F64\",\"shape\":[1," + n + "],\"data_offsets\":[" + 8L * n + "," + 16L * n + "]}}";
    Path f = RawFiles.write(dir.resolve("wide-big.safetensors"), header, data.array());
    try (Scope s = Scope.open(); SafetensorsFile sf = SafetensorsFile.open(f)) {
      int[] ints = sf.read("i").toIntArray();
      float[] fl = sf.read("d").toFloatArray();
      for (int i = 0; i < n; i++) {
        if (ints[i] != i * 3 - 1_000_000) assertEquals(i * 3 - 1_000_000, ints[i], "element " + i);
        if (fl[i] != (float) (i * 0.5 + 0.1)) assertEquals((float) (i * 0.5 + 0.1), fl[i], "element " + i);
      }
    }
  }

  @Test
  void unknownNamesListKnownOnes() throws IOException {
    try (Scope s = Scope.open()) {
      Map<String, Tensor> m = new LinkedHashMap<>();
      for (int i = 0; i < 12; i++) m.put("t" + i, Tensor.of(new float[] {i}));
      Path f = dir.resolve("n.safetensors");
      SafetensorsWriter.write(f, m, null);
      try (SafetensorsFile sf = SafetensorsFile.open(f)) {
        assertFalse(sf.contains("nope"));
        IllegalArgumentException e = assertThrows(IllegalArgumentException.class, () -> sf.read("nope"));
        assertTrue(e.getMessage().contains("\"nope\"") && e.getMessage().contains("\"t0\"")
            && e.getMessage().contains("12 in all") && e.getMessage().contains(f.toString()), e.getMessage());
      }
    }
  }

  @Test
  void readsAfterCloseFailAndCloseIsIdempotent() throws IOException {
    try (Scope s = Scope.open()) {
      Path f = dir.resolve("c.safetensors");
      SafetensorsWriter.write(f, Map.of("x", Tensor.of(new float[] {1})), null);
      SafetensorsFile sf = SafetensorsFile.open(f);
      sf.close();
      sf.close();
      assertThrows(IllegalStateException.class, () -> sf.read("x"));
      assertEquals(1, sf.entries().size(), "the header stays available");
    }
  }

  @Test
  void offsetsBeyondTwoGigabytesAreRead() throws IOException {
    // a sparse file: 3 GB of (unread) padding tensor, then a small tensor at a data offset above 2^31
    long pad = 3_000_000_000L;
    String header = "{\"pad\":{\"dtype\":\"U8\",\"shape\":[" + pad + "],\"data_offsets\":[0," + pad + "]},"
        + "\"x\":{\"dtype\":\"F32\",\"shape\":[3],\"data_offsets\":[" + pad + "," + (pad + 12) + "]}}";
    byte[] h = header.getBytes(StandardCharsets.UTF_8);
    Path f = RawFiles.write(dir.resolve("sparse.safetensors"), h.length, h, new byte[0]);
    try (RandomAccessFile raf = new RandomAccessFile(f.toFile(), "rw")) {
      raf.seek(8 + h.length + pad);
      raf.write(RawFiles.floats(1.5f, -2.5f, 3.25f));
    }
    try (Scope s = Scope.open(); SafetensorsFile sf = SafetensorsFile.open(f)) {
      assertArrayEquals(new float[] {1.5f, -2.5f, 3.25f}, sf.read("x").toFloatArray());
      assertEquals(List.of("pad", "x"), new ArrayList<>(sf.entries().keySet()));
    }
  }

  @Test
  void writeReplacesAtomicallyAndLeavesNoTemporaryFiles() throws IOException {
    try (Scope s = Scope.open()) {
      Path f = dir.resolve("m.safetensors");
      SafetensorsWriter.write(f, Map.of("x", Tensor.of(new float[] {1})), null);
      SafetensorsWriter.write(f, Map.of("y", Tensor.of(new float[] {2, 3})), null);
      try (SafetensorsFile sf = SafetensorsFile.open(f)) {
        assertEquals(List.of("y"), new ArrayList<>(sf.entries().keySet()));
      }
      // a failing body leaves the old file and no temporary file
      IOException e = assertThrows(IOException.class, () -> AtomicFiles.write(f, ch -> {
        AtomicFiles.writeFully(ch, ByteBuffer.wrap(new byte[100]));
        throw new IOException("disk full (simulated)");
      }));
      assertEquals("disk full (simulated)", e.getMessage());
      try (SafetensorsFile sf = SafetensorsFile.open(f)) {
        assertArrayEquals(new float[] {2, 3}, sf.read("y").toFloatArray());
      }
      // a closed tensor fails before anything is written
      Tensor closed = Tensor.of(new float[] {1});
      closed.close();
      assertThrows(IllegalStateException.class, () -> SafetensorsWriter.write(f, Map.of("z", closed), null));
      try (Stream<Path> files = Files.list(dir)) {
        assertEquals(List.of(f), files.toList(), "only the target remains");
      }
      // a reserved name is refused
      assertThrows(IllegalArgumentException.class,
          () -> SafetensorsWriter.write(f, Map.of("__metadata__", Tensor.of(new float[] {1})), null));
      // writing over a directory fails cleanly
      Path d = Files.createDirectory(dir.resolve("adir"));
      SafetensorsException de = assertThrows(SafetensorsException.class,
          () -> SafetensorsWriter.write(d, Map.of("x", Tensor.of(new float[] {1})), null));
      assertTrue(de.getMessage().contains("adir"), de.getMessage());
    }
  }

  @Test
  void emptyFileOfNoTensorsRoundTrips() throws IOException {
    Path f = dir.resolve("empty.safetensors");
    SafetensorsWriter.write(f, Map.of(), Map.of());
    assertEquals(8 + 8, Files.size(f), "\"{}\" padded to 8 bytes");
    try (SafetensorsFile sf = SafetensorsFile.open(f)) {
      assertTrue(sf.entries().isEmpty());
      assertTrue(sf.metadata().isEmpty());
    }
  }
}
