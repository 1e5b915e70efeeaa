package dev.athanor.io.safetensors;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.athanor.tensor.Scope;
import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.Map;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/** Every kind of malformed file gives a SafetensorsException naming the file and the problem, at open. */
@SuppressWarnings("try")
class SafetensorsMalformedTest {
  @TempDir Path dir;

  private int count;

  /** Opens {@code f}, expects failure, checks that the message names the file and has every fragment. */
  private void bad(Path f, String... fragments) {
    SafetensorsException e = assertThrows(SafetensorsException.class, () -> SafetensorsFile.open(f).close());
    String m = e.getMessage();
    assertTrue(m.startsWith(f.toString() + ":"), "names the file: " + m);
    for (String frag : fragments) assertTrue(m.contains(frag), "message lacks \"" + frag + "\": " + m);
  }

  /** A well-framed file with this header and data size. */
  private Path file(String header, int dataBytes) throws IOException {
    return RawFiles.write(dir.resolve("f" + (count++) + ".safetensors"), header, dataBytes);
  }

  private static String entry(String name, String dtype, String shape, String offsets) {
    return "\"" + name + "\":{\"dtype\":" + dtype + ",\"shape\":" + shape + ",\"data_offsets\":" + offsets + "}";
  }

  @Test
  void tooShortForTheLengthField() throws IOException {
    Path empty = Files.write(dir.resolve("empty.safetensors"), new byte[0]);
    bad(empty, "0 bytes", "shorter than the 8-byte header length");
    Path seven = Files.write(dir.resolve("seven.safetensors"), new byte[7]);
    bad(seven, "7 bytes");
  }

  @Test
  void absurdOrOversizedHeaderLength() throws IOException {
    byte[] h = "{}".getBytes(StandardCharsets.UTF_8);
    bad(RawFiles.write(dir.resolve("huge.safetensors"), 1L << 40, h, new byte[0]), "header length 1099511627776 is absurd");
    bad(RawFiles.write(dir.resolve("neg.safetensors"), -1L, h, new byte[0]), "18446744073709551615", "absurd");
    bad(RawFiles.write(dir.resolve("past.safetensors"), 50, h, new byte[0]), "header length 50", "beyond the end of the file (10 bytes");
    // a text file is not a safetensors file
    Path text = Files.writeString(dir.resolve("text.safetensors"), "hello, world, this is plain text");
    bad(text, "absurd");
  }

  @Test
  void headerThatIsNotJsonOrNotAnObject() throws IOException {
    bad(file("{\"a\": ", 0), "not valid JSON");
    bad(file("not json at all", 0), "not valid JSON", "line 1 column 1");
    bad(file("[1, 2, 3]", 0), "not a JSON object", "BEGIN_ARRAY");
    bad(file("\"str\"", 0), "not a JSON object");
    bad(file("{} {}", 0), "not valid JSON", "column 5");
    bad(file("{'a': 1}", 0), "not valid JSON");
    byte[] badUtf8 = {'{', '"', (byte) 0xC3, (byte) 0x28, '"', ':', '1', '}'};
    bad(RawFiles.write(dir.resolve("utf.safetensors"), badUtf8.length, badUtf8, new byte[0]), "not valid UTF-8");
    Path zeros = RawFiles.write(dir.resolve("zero.safetensors"), 0, new byte[0], new byte[0]);
    bad(zeros, "not");
  }

  @Test
  void badEntries() throws IOException {
    bad(file("{\"x\": 5}", 0), "tensor \"x\" must be an object");
    bad(file("{\"x\": {\"shape\": [1], \"data_offsets\": [0, 4]}}", 4), "tensor \"x\" has no dtype");
    bad(file("{\"x\": {\"dtype\": \"F32\", \"data_offsets\": [0, 4]}}", 4), "tensor \"x\" has no shape");
    bad(file("{\"x\": {\"dtype\": \"F32\", \"shape\": [1]}}", 4), "tensor \"x\" has no data_offsets");
    bad(file("{" + entry("x", "\"F32\"", "[1]", "[0,4]") + "," + entry("x", "\"F32\"", "[1]", "[4,8]") + "}", 8),
        "\"x\" twice");
  }

  @Test
  void unknownOrMistypedDtype() throws IOException {
    bad(file("{" + entry("w", "\"F128\"", "[1]", "[0,16]") + "}", 16), "tensor \"w\"", "unknown dtype \"F128\"", "BF16");
    bad(file("{" + entry("w", "\"f32\"", "[1]", "[0,4]") + "}", 4), "unknown dtype \"f32\"");
    bad(file("{" + entry("w", "4", "[1]", "[0,4]") + "}", 4), "dtype must be a string");
  }

  @Test
  void shapeMustBeAListOfNonNegativeIntegers() throws IOException {
    for (String shape : new String[] {"3", "[-1]", "[1.5]", "[\"2\"]", "[null]", "{}", "[1e2]", "[99999999999999999999]"}) {
      bad(file("{" + entry("s", "\"F32\"", shape, "[0,4]") + "}", 4), "tensor \"s\"", "shape must be a list of non-negative integers");
    }
    bad(file("{" + entry("s", "\"F32\"", "[4294967296, 4294967296, 4294967296]", "[0,4]") + "}", 4), "overflows");
  }

  @Test
  void dataOffsetsMustBeAnOrderedPair() throws IOException {
    for (String off : new String[] {"[0]", "[0,4,8]", "4", "[-4,0]", "[0,\"4\"]", "[0.0,4]", "null"}) {
      bad(file("{" + entry("d", "\"F32\"", "[1]", off) + "}", 8), "tensor \"d\"", "data_offsets must be [begin, end]");
    }
    bad(file("{" + entry("d", "\"F32\"", "[1]", "[8,4]") + "}", 8), "begin > end");
  }

  @Test
  void byteLengthMustMatchShapeAndDtype() throws IOException {
    bad(file("{" + entry("b", "\"F32\"", "[2,3]", "[0,20]") + "}", 24), "tensor \"b\"", "needs 24 bytes", "cover 20");
    bad(file("{" + entry("b", "\"BF16\"", "[]", "[0,4]") + "}", 4), "needs 2 bytes", "cover 4");
    bad(file("{" + entry("b", "\"I64\"", "[0]", "[0,8]") + "}", 8), "needs 0 bytes");
  }

  @Test
  void offsetsBeyondTheDataSection() throws IOException {
    bad(file("{" + entry("t", "\"F32\"", "[4]", "[0,16]") + "}", 12), "tensor \"t\"", "beyond the data section of 12 bytes");
    bad(file("{" + entry("a", "\"F32\"", "[1]", "[0,4]") + "," + entry("t", "\"F32\"", "[1]", "[8,12]") + "}", 8),
        "tensor \"t\"", "beyond");
    bad(file("{" + entry("z", "\"F32\"", "[0]", "[9,9]") + "}", 8), "tensor \"z\"", "beyond");
  }

  @Test
  void overlappingRanges() throws IOException {
    bad(file("{" + entry("a", "\"F32\"", "[2]", "[0,8]") + "," + entry("b", "\"F32\"", "[2]", "[4,12]") + "}", 12),
        "\"a\" [0, 8)", "\"b\" [4, 12)", "overlap");
    bad(file("{" + entry("b", "\"F32\"", "[1]", "[4,8]") + "," + entry("a", "\"F32\"", "[4]", "[0,16]") + "}", 16),
        "overlap");
    bad(file("{" + entry("a", "\"F32\"", "[2]", "[0,8]") + "," + entry("c", "\"F32\"", "[2]", "[0,8]") + "}", 8), "overlap");
  }

  @Test
  void metadataMustMapStringsToStrings() throws IOException {
    bad(file("{\"__metadata__\": [1]}", 0), "__metadata__ must be an object");
    bad(file("{\"__metadata__\": {\"k\": 1}}", 0), "__metadata__[\"k\"] must be a string");
    bad(file("{\"__metadata__\": {\"k\": null}}", 0), "must be a string");
  }

  @Test
  void missingFileOrDirectory() throws IOException {
    bad(dir.resolve("nope.safetensors"), "no such file");
    Path d = Files.createDirectory(dir.resolve("d.safetensors"));
    bad(d, "is a directory");
  }

  @Test
  void acceptsLegalOddities() throws IOException {
    // gaps between tensors, trailing bytes, empty tensors anywhere in range, ranges not in key order, spaces
    String h = "{ \"b\" : {\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[12,16]}, "
        + "\"e\":{\"dtype\":\"F32\",\"shape\":[0],\"data_offsets\":[16,16]},"
        + "\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4], \"extra\": \"ignored\"},"
        + "\"__metadata__\":{}}        ";
    byte[] data = new byte[24];
    System.arraycopy(RawFiles.floats(7f), 0, data, 12, 4);
    System.arraycopy(RawFiles.floats(-1f), 0, data, 0, 4);
    Path f = RawFiles.write(dir.resolve("odd.safetensors"), h, data);
    try (Scope s = Scope.open(); SafetensorsFile sf = SafetensorsFile.open(f)) {
      assertEquals(java.util.List.of("a", "b", "e"), new java.util.ArrayList<>(sf.entries().keySet()), "ordered by offset");
      assertArrayEquals(new float[] {7f}, sf.read("b").toFloatArray());
      assertArrayEquals(new float[] {-1f}, sf.read("a").toFloatArray());
      assertEquals(0, sf.read("e").numel());
      assertEquals(Map.of(), sf.metadata());
    }
  }

  @Test
  void truncatedAfterOpenGivesAnErrorNotACrash() throws IOException {
    Path f = file("{" + entry("t", "\"F32\"", "[4]", "[0,16]") + "}", 16);
    try (Scope s = Scope.open(); SafetensorsFile sf = SafetensorsFile.open(f)) {
      try (var ch = java.nio.channels.FileChannel.open(f, java.nio.file.StandardOpenOption.WRITE)) {
        ch.truncate(Files.size(f) - 8);
      }
      SafetensorsException e = assertThrows(SafetensorsException.class, () -> sf.read("t"));
      assertTrue(e.getMessage().contains(f.toString()) && e.getMessage().contains("end of file"), e.getMessage());
    }
  }
}
