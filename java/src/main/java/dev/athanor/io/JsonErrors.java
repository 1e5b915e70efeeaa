package dev.athanor.io;

/** Gson's parse errors as short messages for users (shared by every reader of JSON files). */
public final class JsonErrors {
  private JsonErrors() {}

  /** Gson's message without the exception class, the lenient-parsing advice or the troubleshooting link. */
  public static String message(Exception e) {
    String m = String.valueOf(e.getMessage());
    int see = m.indexOf("\nSee https://");
    if (see >= 0) m = m.substring(0, see);
    m = m.replace("com.google.gson.stream.MalformedJsonException: ", "").replace("java.io.EOFException: ", "");
    return m.replace("Use JsonReader.setStrictness(Strictness.LENIENT) to accept malformed JSON", "malformed JSON");
  }
}
