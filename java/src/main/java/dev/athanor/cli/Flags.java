package dev.athanor.cli;

import java.nio.file.Path;
import java.util.LinkedHashMap;
import java.util.LinkedHashSet;
import java.util.List;
import java.util.Locale;
import java.util.Map;
import java.util.Set;

/**
 * Command-line flags of one subcommand: {@code --name value} or {@code --name=value}. Every flag must be
 * declared by the command (a typo is an error naming the known flags), each read converts and validates
 * its value with a message naming the flag.
 */
final class Flags {
  private final String command;
  private final Map<String, String> values = new LinkedHashMap<>();
  private final Set<String> known;

  Flags(String command, List<String> args, Set<String> known, Set<String> switches) {
    this.command = command;
    this.known = new LinkedHashSet<>(known);
    this.known.addAll(switches);
    for (int i = 0; i < args.size(); i++) {
      String a = args.get(i);
      if (!a.startsWith("--") || a.length() == 2) {
        throw new IllegalArgumentException("unexpected argument '" + a + "'; flags look like --name value (see athanor help)");
      }
      String name = a.substring(2), value;
      int eq = name.indexOf('=');
      if (eq >= 0) {
        value = name.substring(eq + 1);
        name = name.substring(0, eq);
      } else if (switches.contains(name) && (i + 1 >= args.size() || args.get(i + 1).startsWith("--"))) {
        value = "true";
      } else {
        if (i + 1 >= args.size()) throw new IllegalArgumentException("--" + name + " needs a value");
        value = args.get(++i);
      }
      if (!this.known.contains(name)) {
        throw new IllegalArgumentException("unknown flag --" + name + " for '" + command + "'; known: --"
            + String.join(", --", this.known));
      }
      if (values.put(name, value) != null) throw new IllegalArgumentException("--" + name + " given twice");
    }
  }

  boolean has(String name) {
    return values.containsKey(name);
  }

  String str(String name, String def) {
    return values.getOrDefault(name, def);
  }

  String required(String name) {
    String v = values.get(name);
    if (v == null) throw new IllegalArgumentException("'" + command + "' needs --" + name);
    return v;
  }

  Path path(String name, Path def) {
    String v = values.get(name);
    return v == null ? def : Path.of(v);
  }

  int integer(String name, int def) {
    String v = values.get(name);
    if (v == null) return def;
    try {
      return Integer.parseInt(v.trim().replace("_", ""));
    } catch (NumberFormatException e) {
      throw new IllegalArgumentException("--" + name + " expects an integer, got '" + v + "'");
    }
  }

  long longValue(String name, long def) {
    String v = values.get(name);
    if (v == null) return def;
    try {
      return Long.parseLong(v.trim().replace("_", ""));
    } catch (NumberFormatException e) {
      throw new IllegalArgumentException("--" + name + " expects an integer, got '" + v + "'");
    }
  }

  float number(String name, float def) {
    String v = values.get(name);
    if (v == null) return def;
    try {
      float f = Float.parseFloat(v.trim());
      if (!Float.isFinite(f)) throw new NumberFormatException();
      return f;
    } catch (NumberFormatException e) {
      throw new IllegalArgumentException("--" + name + " expects a finite number, got '" + v + "'");
    }
  }

  boolean bool(String name, boolean def) {
    String v = values.get(name);
    if (v == null) return def;
    return switch (v.trim().toLowerCase(Locale.ROOT)) {
      case "true", "yes", "on", "1" -> true;
      case "false", "no", "off", "0" -> false;
      default -> throw new IllegalArgumentException("--" + name + " expects true or false, got '" + v + "'");
    };
  }
}
