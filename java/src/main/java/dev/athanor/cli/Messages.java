package dev.athanor.cli;

import dev.athanor.io.FileProblems;
import dev.athanor.io.JsonErrors;
import dev.athanor.runtime.NativeException;
import java.io.IOException;
import java.io.UncheckedIOException;
import java.util.Set;
import java.util.regex.Matcher;
import java.util.regex.Pattern;

/**
 * The message a person sees for an exception that ends a command: what went wrong, in words. The libraries' messages
 * already say that; this is the last line of defence against what may still leak through from the JDK and from
 * libraries: exception class names ({@code java.nio.file.FileAlreadyExistsException: x}), Gson's troubleshooting
 * links, native status codes ({@code ATH_ERR_INVALID}). An exception that can only be a bug is called one.
 */
final class Messages {
  private Messages() {}

  /** Exceptions that only a bug throws: their message is about the code, not the input. */
  private static final Set<Class<? extends Throwable>> BUGS = Set.of(NullPointerException.class, ClassCastException.class,
      IndexOutOfBoundsException.class, ArrayIndexOutOfBoundsException.class, StringIndexOutOfBoundsException.class,
      ArithmeticException.class, NegativeArraySizeException.class, ArrayStoreException.class);

  /** A qualified exception class name, with the colon after it when there is one. */
  private static final Pattern CLASS_NAME =
      Pattern.compile("\\b(?:[a-z_][\\w$]*\\.)+([A-Z][\\w$]*(?:Exception|Error))\\b(:\\s*)?");
  private static final Pattern CODING_ERROR =
      Pattern.compile("\\b(?:[a-z_][\\w$]*\\.)+(?:MalformedInput|UnmappableCharacter)Exception(?::\\s*Input length = \\d+)?");
  private static final Pattern URL = Pattern.compile("\\s*\\b[Ss]ee https?://[^\\s)]+");
  private static final Pattern STATUS = Pattern.compile("\\bATH_ERR_[A-Z_]+:\\s*");

  /** The message for {@code e}, its lines without control characters (which could drive the terminal). */
  static String of(Throwable e) {
    return String.join("\n", message(e).lines().map(FileProblems::printable).toList());
  }

  private static String message(Throwable e) {
    if (BUGS.contains(e.getClass())) {
      return "internal error (" + FileProblems.words(e.getClass().getSimpleName())
          + (e.getMessage() != null ? ": " + clean(e.getMessage()) : "")
          + "); this is a bug: please report it with the command line (ATHANOR_JAVA_OPTS=-Dathanor.debug=true shows where)";
    }
    String m = e instanceof NativeException n ? n.detail() : e.getMessage();
    if (e instanceof UncheckedIOException && e.getCause() instanceof IOException io
        && (m == null || m.equals(io.toString()))) {
      return clean(FileProblems.describe(io)); // wrapped without a message of its own
    }
    if (m == null || m.isBlank()) {
      Throwable io = e instanceof UncheckedIOException && e.getCause() != null ? e.getCause() : e;
      m = io instanceof IOException ? FileProblems.reason(io) : FileProblems.words(e.getClass().getSimpleName());
    }
    return clean(m);
  }

  /** {@code m} without exception class names, library links and native status codes. */
  static String clean(String m) {
    String s = CODING_ERROR.matcher(m).replaceAll("not valid UTF-8 text");
    s = JsonErrors.clean(s); // Gson's advice and links
    s = URL.matcher(s).replaceAll("");
    s = STATUS.matcher(s).replaceAll("");
    Matcher c = CLASS_NAME.matcher(s);
    StringBuilder sb = new StringBuilder();
    while (c.find()) {
      c.appendReplacement(sb, Matcher.quoteReplacement(FileProblems.words(c.group(1)) + (c.group(2) != null ? ": " : "")));
    }
    c.appendTail(sb);
    return sb.toString().strip();
  }
}
