package dev.athanor.io.safetensors;

import com.google.gson.Gson;
import com.google.gson.JsonArray;
import com.google.gson.JsonElement;
import com.google.gson.JsonObject;
import com.google.gson.JsonParseException;
import com.google.gson.TypeAdapter;
import com.google.gson.Strictness;
import com.google.gson.stream.JsonReader;
import com.google.gson.stream.JsonToken;
import java.io.IOException;
import java.io.StringReader;
import java.nio.ByteBuffer;
import java.nio.charset.CharacterCodingException;
import java.nio.charset.CodingErrorAction;
import java.nio.charset.StandardCharsets;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.Collections;
import java.util.Comparator;
import java.util.HashSet;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Set;

/**
 * The parsed and validated JSON header of a safetensors file.
 *
 * <p>Layout of the file: 8 bytes little-endian unsigned header length N, N bytes of UTF-8 JSON (an object
 * mapping tensor names to {@code {"dtype", "shape", "data_offsets"}}, plus an optional {@code __metadata__}
 * string-to-string map; trailing spaces allowed), then the data section, to which {@code data_offsets} are
 * relative.
 */
record Header(Map<String, TensorEntry> entries, Map<String, String> metadata) {
  /** The largest header accepted (the reference implementation's limit). */
  static final long MAX_HEADER_BYTES = 100_000_000L;

  static final String METADATA_KEY = "__metadata__";

  /** Reads one JSON value; unlike JsonParser, a value cut off by the end of input is an error, not null. */
  private static final TypeAdapter<JsonElement> JSON_VALUE = new Gson().getAdapter(JsonElement.class);

  /**
   * Parses {@code json} (the header bytes) of the file {@code source} whose data section holds
   * {@code dataBytes} bytes, validating every entry.
   */
  static Header parse(String source, byte[] json, long dataBytes) {
    String text;
    try {
      text = StandardCharsets.UTF_8.newDecoder()
          .onMalformedInput(CodingErrorAction.REPORT)
          .onUnmappableCharacter(CodingErrorAction.REPORT)
          .decode(ByteBuffer.wrap(json))
          .toString();
    } catch (CharacterCodingException e) {
      throw fail(source, "header is not valid UTF-8 text (corrupted, or not a safetensors file?)");
    }
    Map<String, TensorEntry> entries = new LinkedHashMap<>();
    Map<String, String> metadata = Map.of();
    try (JsonReader r = new JsonReader(new StringReader(text))) {
      r.setStrictness(Strictness.STRICT);
      JsonToken first = r.peek();
      if (first != JsonToken.BEGIN_OBJECT) {
        throw fail(source, "header is not a JSON object (starts with " + first + ")");
      }
      r.beginObject();
      Set<String> seen = new HashSet<>();
      boolean sawMetadata = false;
      while (r.hasNext()) {
        String name = r.nextName();
        if (!seen.add(name)) throw fail(source, "header names \"" + name + "\" twice");
        JsonElement value = JSON_VALUE.read(r);
        if (name.equals(METADATA_KEY)) {
          metadata = parseMetadata(source, value);
          sawMetadata = true;
        } else {
          entries.put(name, parseEntry(source, name, value));
        }
      }
      r.endObject();
      if (r.peek() != JsonToken.END_DOCUMENT) throw fail(source, "header has data after the JSON object");
      if (!sawMetadata) metadata = Map.of();
    } catch (SafetensorsException e) {
      throw e;
    } catch (JsonParseException | IOException | IllegalStateException e) {
      throw fail(source, "header is not valid JSON: " + jsonError(e));
    }
    return new Header(validateLayout(source, entries, dataBytes), metadata);
  }

  private static Map<String, String> parseMetadata(String source, JsonElement value) {
    if (!value.isJsonObject()) {
      throw fail(source, METADATA_KEY + " must be an object of strings, got " + abbreviate(value));
    }
    Map<String, String> m = new LinkedHashMap<>();
    for (Map.Entry<String, JsonElement> e : value.getAsJsonObject().entrySet()) {
      JsonElement v = e.getValue();
      if (!(v.isJsonPrimitive() && v.getAsJsonPrimitive().isString())) {
        throw fail(source, METADATA_KEY + "[\"" + e.getKey() + "\"] must be a string, got " + abbreviate(v));
      }
      m.put(e.getKey(), v.getAsString());
    }
    return Collections.unmodifiableMap(m);
  }

  private static TensorEntry parseEntry(String source, String name, JsonElement value) {
    String where = "tensor \"" + name + "\"";
    if (!value.isJsonObject()) throw fail(source, where + " must be an object, got " + abbreviate(value));
    JsonObject o = value.getAsJsonObject();
    JsonElement d = o.get("dtype");
    if (d == null) throw fail(source, where + " has no dtype");
    if (!(d.isJsonPrimitive() && d.getAsJsonPrimitive().isString())) {
      throw fail(source, where + ": dtype must be a string, got " + abbreviate(d));
    }
    String dtype = d.getAsString();
    StDType t = StDType.byName(dtype);
    if (t == null) {
      throw fail(source, where + " has unknown dtype \"" + dtype + "\"; known: " + Arrays.toString(StDType.values()));
    }
    JsonElement s = o.get("shape");
    if (s == null) throw fail(source, where + " has no shape");
    if (!s.isJsonArray()) throw fail(source, where + ": shape must be a list of non-negative integers, got " + abbreviate(s));
    JsonArray sa = s.getAsJsonArray();
    long[] shape = new long[sa.size()];
    for (int i = 0; i < shape.length; i++) {
      long v = nonNegativeLong(sa.get(i));
      if (v < 0) {
        throw fail(source, where + ": shape must be a list of non-negative integers, got " + abbreviate(s));
      }
      shape[i] = v;
    }
    JsonElement off = o.get("data_offsets");
    if (off == null) throw fail(source, where + " has no data_offsets");
    long begin = -1, end = -1;
    if (off.isJsonArray() && off.getAsJsonArray().size() == 2) {
      begin = nonNegativeLong(off.getAsJsonArray().get(0));
      end = nonNegativeLong(off.getAsJsonArray().get(1));
    }
    if (begin < 0 || end < 0) {
      throw fail(source, where + ": data_offsets must be [begin, end] with non-negative integers, got " + abbreviate(off));
    }
    if (begin > end) throw fail(source, where + ": data_offsets [" + begin + ", " + end + "] have begin > end");
    long numel = 1;
    long bytes;
    try {
      for (long v : shape) numel = Math.multiplyExact(numel, v);
      bytes = Math.multiplyExact(numel, (long) t.byteSize);
    } catch (ArithmeticException e) {
      throw fail(source, where + ": shape " + Arrays.toString(shape) + " of " + dtype + " overflows 2^63 bytes");
    }
    if (end - begin != bytes) {
      throw fail(source, where + ": shape " + Arrays.toString(shape) + " of " + dtype + " needs " + bytes
          + " bytes but data_offsets [" + begin + ", " + end + "] cover " + (end - begin));
    }
    return new TensorEntry(name, dtype, shape, begin, end);
  }

  /** Checks ranges against the data section and each other; returns the entries ordered by offset. */
  private static Map<String, TensorEntry> validateLayout(String source, Map<String, TensorEntry> entries, long dataBytes) {
    List<TensorEntry> sorted = new ArrayList<>(entries.values());
    sorted.sort(Comparator.comparingLong(TensorEntry::begin).thenComparingLong(TensorEntry::end));
    TensorEntry last = null; // the non-empty entry reaching furthest so far
    for (TensorEntry e : sorted) {
      if (e.end() > dataBytes) {
        throw fail(source, "tensor \"" + e.name() + "\": data_offsets [" + e.begin() + ", " + e.end()
            + "] go beyond the data section of " + dataBytes + " bytes (truncated file?)");
      }
      if (e.end() == e.begin()) continue;
      if (last != null && e.begin() < last.end()) {
        throw fail(source, "tensors \"" + last.name() + "\" [" + last.begin() + ", " + last.end() + ") and \""
            + e.name() + "\" [" + e.begin() + ", " + e.end() + ") overlap");
      }
      if (last == null || e.end() > last.end()) last = e;
    }
    Map<String, TensorEntry> m = new LinkedHashMap<>();
    for (TensorEntry e : sorted) m.put(e.name(), e);
    return Collections.unmodifiableMap(m);
  }

  /** The value as a non-negative long, or -1 when it is not a JSON integer in [0, 2^63). */
  private static long nonNegativeLong(JsonElement e) {
    if (!(e.isJsonPrimitive() && e.getAsJsonPrimitive().isNumber())) return -1;
    String lit = e.getAsJsonPrimitive().getAsString();
    try {
      long v = Long.parseLong(lit);
      return v >= 0 ? v : -1;
    } catch (NumberFormatException ex) {
      return -1;
    }
  }

  static String jsonError(Exception e) {
    return dev.athanor.io.JsonErrors.message(e);
  }

  static String abbreviate(JsonElement e) {
    String s = e == null ? "nothing" : e.toString();
    return s.length() > 80 ? s.substring(0, 77) + "..." : s;
  }

  static SafetensorsException fail(String source, String problem) {
    return new SafetensorsException(source + ": " + problem);
  }

  /** Shows a few names of a set, for errors about unknown names. */
  static String sample(Iterable<String> names, int max) {
    StringBuilder sb = new StringBuilder();
    int n = 0, total = 0;
    for (String s : names) {
      if (n < max) {
        sb.append(n == 0 ? "" : ", ").append('"').append(s).append('"');
        n++;
      }
      total++;
    }
    if (total == 0) return "(none)";
    if (total > n) sb.append(", ... (").append(total).append(" in all)");
    return sb.toString();
  }
}
