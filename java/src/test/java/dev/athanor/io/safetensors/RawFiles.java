package dev.athanor.io.safetensors;

import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;

/** Builds safetensors files byte by byte, for tests of malformed and hand-crafted files. */
final class RawFiles {
  private RawFiles() {}

  /** A file of an 8-byte length {@code headerLength}, then {@code header}, then {@code data}. */
  static Path write(Path file, long headerLength, byte[] header, byte[] data) throws IOException {
    ByteBuffer b = ByteBuffer.allocate(8 + header.length + data.length).order(ByteOrder.LITTLE_ENDIAN);
    b.putLong(headerLength).put(header).put(data);
    Files.write(file, b.array());
    return file;
  }

  /** A well-framed file: the header's true length, the header JSON, {@code dataBytes} zero bytes. */
  static Path write(Path file, String headerJson, int dataBytes) throws IOException {
    byte[] h = headerJson.getBytes(StandardCharsets.UTF_8);
    return write(file, h.length, h, new byte[dataBytes]);
  }

  /** A well-framed file with the given data. */
  static Path write(Path file, String headerJson, byte[] data) throws IOException {
    byte[] h = headerJson.getBytes(StandardCharsets.UTF_8);
    return write(file, h.length, h, data);
  }

  /** Little-endian bytes of longs. */
  static byte[] longs(long... v) {
    ByteBuffer b = ByteBuffer.allocate(8 * v.length).order(ByteOrder.LITTLE_ENDIAN);
    for (long x : v) b.putLong(x);
    return b.array();
  }

  /** Little-endian bytes of doubles. */
  static byte[] doubles(double... v) {
    ByteBuffer b = ByteBuffer.allocate(8 * v.length).order(ByteOrder.LITTLE_ENDIAN);
    for (double x : v) b.putDouble(x);
    return b.array();
  }

  /** Little-endian bytes of floats. */
  static byte[] floats(float... v) {
    ByteBuffer b = ByteBuffer.allocate(4 * v.length).order(ByteOrder.LITTLE_ENDIAN);
    for (float x : v) b.putFloat(x);
    return b.array();
  }

  /** The header length field of {@code file}. */
  static long headerLength(Path file) throws IOException {
    byte[] b = Files.readAllBytes(file);
    return ByteBuffer.wrap(b, 0, 8).order(ByteOrder.LITTLE_ENDIAN).getLong();
  }

  /** The header text of {@code file} (padding included). */
  static String headerText(Path file) throws IOException {
    byte[] b = Files.readAllBytes(file);
    int n = (int) ByteBuffer.wrap(b, 0, 8).order(ByteOrder.LITTLE_ENDIAN).getLong();
    return new String(b, 8, n, StandardCharsets.UTF_8);
  }
}
