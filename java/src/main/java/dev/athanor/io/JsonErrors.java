package dev.athanor.io;

/** Gson's parse errors as short messages for users (shared by every reader of JSON files). */
public final class JsonErrors {
  private JsonErrors() {}

  /** Gson's message without the exception class, the lenient-parsing advice or the troubleshooting link. */
  public static String message(Exception e) {
    return clean(String.valueOf(e.getMessage()));
  }

  /** {@code m} without Gson's exception class names, lenient-parsing advice and troubleshooting link. */
  public static String clean(String m) {
    m = m.replaceAll("\\s*See https?://[^\\s)]+", "");
    m = m.replace("com.google.gson.stream.MalformedJsonException: ", "").replace("java.io.EOFException: ", "");
    m = m.replace("Use JsonReader.setStrictness(Strictness.LENIENT) to accept malformed JSON", "malformed JSON");
    return m.replaceAll("( path \\S{60})\\S{20,}", "$1..."); // a path 255 levels deep
  }
}
