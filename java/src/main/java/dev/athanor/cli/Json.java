package dev.athanor.cli;

import java.math.BigDecimal;
import java.math.MathContext;
import java.math.RoundingMode;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;

/**
 * A minimal JSON writer for the CLI's machine-readable output (maps, lists, strings, numbers, booleans). The output is
 * standard JSON (RFC 8259): NaN and infinite numbers, which it has no spelling for, are written as {@code null}.
 */
final class Json {
  private Json() {}

  /** {@code x} rounded to {@code decimals} places, written as such (e.g. 12.3400); NaN and infinities stay (null). */
  static Number round(double x, int decimals) {
    return Double.isFinite(x) ? new BigDecimal(x).setScale(decimals, RoundingMode.HALF_EVEN) : x;
  }

  /** Each of {@code xs} rounded as by {@link #round(double, int)}. */
  static List<Number> round(double[] xs, int decimals) {
    List<Number> l = new ArrayList<>(xs.length);
    for (double x : xs) l.add(round(x, decimals));
    return l;
  }

  /** {@code x} to {@code digits} significant digits (e.g. 1.235E+9); NaN and infinities stay (null). */
  static Number significant(double x, int digits) {
    return Double.isFinite(x) ? new BigDecimal(x).round(new MathContext(digits, RoundingMode.HALF_EVEN)) : x;
  }

  static String write(Object value) {
    StringBuilder sb = new StringBuilder();
    write(value, sb);
    return sb.toString();
  }

  private static void write(Object value, StringBuilder sb) {
    switch (value) {
      case null -> sb.append("null");
      case Map<?, ?> map -> {
        sb.append('{');
        boolean first = true;
        for (var e : map.entrySet()) {
          if (!first) sb.append(',');
          first = false;
          string(String.valueOf(e.getKey()), sb);
          sb.append(':');
          write(e.getValue(), sb);
        }
        sb.append('}');
      }
      case List<?> list -> {
        sb.append('[');
        for (int i = 0; i < list.size(); i++) {
          if (i > 0) sb.append(',');
          write(list.get(i), sb);
        }
        sb.append(']');
      }
      case Double d when !Double.isFinite(d) -> sb.append("null"); // NaN and infinities are not JSON
      case Float f when !Float.isFinite(f) -> sb.append("null");
      case Number n -> sb.append(n);
      case Boolean b -> sb.append(b);
      default -> string(value.toString(), sb);
    }
  }

  private static void string(String s, StringBuilder sb) {
    sb.append('"');
    for (int i = 0; i < s.length(); i++) {
      char c = s.charAt(i);
      switch (c) {
        case '"' -> sb.append("\\\"");
        case '\\' -> sb.append("\\\\");
        case '\n' -> sb.append("\\n");
        case '\r' -> sb.append("\\r");
        case '\t' -> sb.append("\\t");
        default -> {
          if (c < 0x20) sb.append(String.format("\\u%04x", (int) c));
          else sb.append(c);
        }
      }
    }
    sb.append('"');
  }
}
