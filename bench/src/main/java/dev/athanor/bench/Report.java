package dev.athanor.bench;

import dev.athanor.runtime.NativeRuntime;
import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.ZoneOffset;
import java.time.ZonedDateTime;
import java.time.format.DateTimeFormatter;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Locale;
import java.util.Map;
import java.util.TreeMap;

/**
 * Turns a JMH JSON result file ({@code -rf json -rff FILE}) of {@link GemmBench} and
 * {@link AttentionBench} into Markdown tables of GFLOP/s, with the Athanor / OpenBLAS ratio per GEMM
 * shape, preceded by a description of the machine and the software.
 *
 * <pre>
 *   java -cp bench/target/benchmarks.jar dev.athanor.bench.Report RESULT.json [MORE.json...] [--out FILE.md] [--note TEXT]...
 * </pre>
 *
 * GFLOP/s = JMH score (operations per second) x FLOPs per operation / 1e9, with the FLOP formulas of
 * the benchmark classes; the "±" is JMH's 99.9% confidence half-width scaled the same way.
 */
public final class Report {
  private Report() {}

  public static void main(String[] args) throws IOException {
    Path out = null;
    List<Path> inputs = new ArrayList<>();
    List<String> notes = new ArrayList<>();
    for (int i = 0; i < args.length; i++) {
      switch (args[i]) {
        case "--out" -> out = Path.of(args[++i]);
        case "--note" -> notes.add(args[++i]);
        default -> inputs.add(Path.of(args[i]));
      }
    }
    if (inputs.isEmpty()) {
      System.err.println("usage: Report RESULT.json [MORE.json...] [--out FILE.md] [--note TEXT]...");
      System.exit(2);
    }
    List<Object> results = new ArrayList<>();
    for (Path in : inputs) {
      Object parsed = new Json(Files.readString(in)).parse();
      if (!(parsed instanceof List<?> list)) throw new IllegalArgumentException(in + " is not a JMH JSON result (no top-level array)");
      results.addAll(list);
    }
    String md = render(results, notes);
    System.out.print(md);
    if (out != null) {
      Files.createDirectories(out.toAbsolutePath().getParent());
      Files.writeString(out, md);
      System.err.println("Report: wrote " + out);
    }
  }

  /** One benchmark result, its GFLOP/s and the half-width of the confidence interval. */
  record Row(String bench, String method, Map<String, String> params, double gflops, double error, String settings) {}

  static String render(List<?> results, List<String> notes) {
    List<Row> rows = new ArrayList<>();
    String settings = "";
    for (Object o : results) {
      Map<?, ?> r = (Map<?, ?>) o;
      String full = (String) r.get("benchmark");
      String method = full.substring(full.lastIndexOf('.') + 1);
      String cls = full.substring(0, full.lastIndexOf('.'));
      cls = cls.substring(cls.lastIndexOf('.') + 1);
      Map<String, String> params = new TreeMap<>();
      if (r.get("params") instanceof Map<?, ?> p) p.forEach((k, v) -> params.put(k.toString(), v.toString()));
      Map<?, ?> pm = (Map<?, ?>) r.get("primaryMetric");
      double score = number(pm.get("score"));
      double err = number(pm.get("scoreError"));
      String unit = String.valueOf(pm.get("scoreUnit"));
      if (!unit.equals("ops/s")) throw new IllegalArgumentException(full + ": score unit " + unit + ", expected ops/s (Mode.Throughput, seconds)");
      double flops = switch (cls) {
        case "GemmBench" -> GemmBench.flops(params.get("shape"));
        case "AttentionBench" -> AttentionBench.flops(params.get("shape"), method.equals("backward"));
        default -> Double.NaN;
      };
      settings = "JMH " + r.get("jmhVersion") + ", " + whole(r.get("forks")) + " fork(s), " + whole(r.get("warmupIterations"))
          + " x " + r.get("warmupTime") + " warm-up, " + whole(r.get("measurementIterations")) + " x " + r.get("measurementTime")
          + " measurement, JDK " + r.get("jdkVersion") + " (" + r.get("vmName") + ")";
      rows.add(new Row(cls, method, params, score * flops / 1e9, err * flops / 1e9, settings));
    }

    StringBuilder sb = new StringBuilder();
    sb.append(machine());
    sb.append("- settings: ").append(settings).append('\n');
    for (String n : notes) sb.append("- ").append(n).append('\n');
    sb.append('\n');

    // GEMM: one line per (shape, threads), Athanor and OpenBLAS side by side.
    Map<String, Row[]> gemm = new LinkedHashMap<>();
    for (Row r : rows) {
      if (!r.bench.equals("GemmBench")) continue;
      String key = r.params.get("shape") + "|" + r.params.getOrDefault("threads", "0");
      Row[] pair = gemm.computeIfAbsent(key, x -> new Row[2]);
      pair[r.method.equals("athanor") ? 0 : 1] = r;
    }
    if (!gemm.isEmpty()) {
      sb.append("## CPU FP32 GEMM (GFLOP/s = 2MNK x ops/s / 1e9)\n\n");
      sb.append("C (M, N) = op(A) (M, K) @ op(B) (K, N). Layout NN: A (M, K), B (K, N); NT: B stored (N, K) "
          + "(a linear layer's weight); TN: A stored (K, M) (a weight gradient). Ratio = Athanor / OpenBLAS "
          + "(above 1: Athanor faster). Same data, same thread count.\n\n");
      sb.append("| M x N x K | layout | threads | Athanor GFLOP/s | OpenBLAS GFLOP/s | ratio |\n");
      sb.append("| --- | --- | --- | --- | --- | --- |\n");
      for (var e : gemm.entrySet()) {
        String[] key = e.getKey().split("\\|");
        String[] sl = key[0].split(":");
        Row ours = e.getValue()[0], peer = e.getValue()[1];
        sb.append("| ").append(sl[0]).append(" | ").append(sl.length > 1 ? sl[1] : "NN").append(" | ")
            .append(key[1].equals("0") ? "all (" + Runtime.getRuntime().availableProcessors() + ")" : key[1]).append(" | ")
            .append(cell(ours)).append(" | ").append(cell(peer)).append(" | ")
            .append(ours != null && peer != null ? String.format(Locale.ROOT, "%.2f", ours.gflops / peer.gflops) : "—")
            .append(" |\n");
      }
      sb.append('\n');
    }
    List<Row> attn = new ArrayList<>(rows.stream().filter(r -> r.bench.equals("AttentionBench")).toList());
    List<String> shapeOrder = attn.stream().map(r -> r.params.get("shape") + "|" + r.params.get("dtype")).distinct().toList();
    attn.sort(java.util.Comparator.<Row>comparingInt(r -> shapeOrder.indexOf(r.params.get("shape") + "|" + r.params.get("dtype")))
        .thenComparingInt(r -> r.method.equals("forward") ? 0 : 1));
    if (!attn.isEmpty()) {
      sb.append("## CPU attention (GFLOP/s; forward 4·B·H·T²·D, ×0.5 causal; backward 2.5× forward)\n\n");
      sb.append("| B x H x T x D | mask | dtype | pass | threads | Athanor GFLOP/s |\n");
      sb.append("| --- | --- | --- | --- | --- | --- |\n");
      for (Row r : attn) {
        String[] sl = r.params.get("shape").split(":");
        String t = r.params.getOrDefault("threads", "0");
        sb.append("| ").append(sl[0]).append(" | ").append(sl.length > 1 ? sl[1] : "none").append(" | ")
            .append(r.params.getOrDefault("dtype", "F32")).append(" | ").append(r.method).append(" | ")
            .append(t.equals("0") ? "all (" + Runtime.getRuntime().availableProcessors() + ")" : t).append(" | ")
            .append(cell(r)).append(" |\n");
      }
      sb.append('\n');
    }
    return sb.toString();
  }

  private static String cell(Row r) {
    if (r == null) return "—";
    if (Double.isNaN(r.error)) return String.format(Locale.ROOT, "%.1f", r.gflops);
    return String.format(Locale.ROOT, "%.1f ± %.1f", r.gflops, r.error);
  }

  private static String whole(Object o) {
    return o instanceof Number n && n.doubleValue() == Math.rint(n.doubleValue()) ? Long.toString(n.longValue()) : String.valueOf(o);
  }

  private static double number(Object o) {
    if (o instanceof Number n) return n.doubleValue();
    if (o instanceof String s) {
      try {
        return Double.parseDouble(s);
      } catch (NumberFormatException e) {
        return Double.NaN;
      }
    }
    return Double.NaN;
  }

  /** What ran where: CPU model, cores, Athanor's build and ISA, OpenBLAS, the JVM, the date. */
  static String machine() {
    String cpu = "unknown CPU";
    try {
      String name = null, family = null, model = null;
      for (String line : Files.readAllLines(Path.of("/proc/cpuinfo"))) {
        String v = line.substring(line.indexOf(':') + 1).trim();
        if (name == null && line.startsWith("model name")) name = v;
        else if (family == null && line.startsWith("cpu family")) family = v;
        else if (model == null && line.matches("model\\s*:.*")) model = v;
        if (line.isBlank()) break; // first processor only
      }
      if (name != null) cpu = name + (family != null ? " (cpu family " + family + ", model " + model + ")" : "");
    } catch (IOException | RuntimeException e) {
      // not Linux: keep "unknown CPU"
    }
    StringBuilder sb = new StringBuilder();
    sb.append("- date (UTC): ").append(ZonedDateTime.now(ZoneOffset.UTC).format(DateTimeFormatter.ofPattern("yyyy-MM-dd HH:mm"))).append('\n');
    sb.append("- machine: ").append(cpu).append(", ").append(Runtime.getRuntime().availableProcessors())
        .append(" cores available to the JVM\n");
    try {
      sb.append("- athanor ").append(NativeRuntime.version()).append(": CPU ISA ").append(NativeRuntime.cpuIsa())
          .append(" (features: ").append(NativeRuntime.cpuFeatures()).append(")\n");
    } catch (RuntimeException | LinkageError e) {
      sb.append("- athanor: native library not loadable here (").append(e.getMessage()).append(")\n");
    }
    String coretype = System.getenv("OPENBLAS_CORETYPE");
    sb.append("- OpenBLAS 0.3.31 (org.bytedeco:openblas:0.3.31-1.5.13, DYNAMIC_ARCH), OPENBLAS_CORETYPE ")
        .append(coretype == null ? "unset (auto-detected core)" : "= " + coretype).append('\n');
    sb.append("- JVM: ").append(System.getProperty("java.vm.name")).append(' ').append(System.getProperty("java.version")).append('\n');
    return sb.toString();
  }

  /** A small JSON reader (objects, arrays, strings, numbers, literals): enough for JMH's output. */
  static final class Json {
    private final String s;
    private int i;

    Json(String s) {
      this.s = s;
    }

    Object parse() {
      Object v = value();
      ws();
      if (i != s.length()) throw error("trailing characters");
      return v;
    }

    private Object value() {
      ws();
      if (i >= s.length()) throw error("unexpected end");
      char c = s.charAt(i);
      switch (c) {
        case '{' -> {
          i++;
          Map<String, Object> m = new LinkedHashMap<>();
          ws();
          if (peek('}')) return m;
          do {
            ws();
            String k = string();
            ws();
            expect(':');
            m.put(k, value());
            ws();
          } while (peek(','));
          expect('}');
          return m;
        }
        case '[' -> {
          i++;
          List<Object> l = new ArrayList<>();
          ws();
          if (peek(']')) return l;
          do {
            l.add(value());
            ws();
          } while (peek(','));
          expect(']');
          return l;
        }
        case '"' -> {
          return string();
        }
        default -> {
          int start = i;
          while (i < s.length() && "{}[],: \t\r\n".indexOf(s.charAt(i)) < 0) i++;
          String tok = s.substring(start, i);
          return switch (tok) {
            case "true" -> Boolean.TRUE;
            case "false" -> Boolean.FALSE;
            case "null" -> null;
            default -> {
              try {
                yield Double.parseDouble(tok);
              } catch (NumberFormatException e) {
                throw error("bad token '" + tok + "'");
              }
            }
          };
        }
      }
    }

    private String string() {
      expect('"');
      StringBuilder b = new StringBuilder();
      while (i < s.length()) {
        char c = s.charAt(i++);
        if (c == '"') return b.toString();
        if (c != '\\') {
          b.append(c);
          continue;
        }
        char e = s.charAt(i++);
        switch (e) {
          case 'n' -> b.append('\n');
          case 't' -> b.append('\t');
          case 'r' -> b.append('\r');
          case 'b' -> b.append('\b');
          case 'f' -> b.append('\f');
          case 'u' -> {
            b.append((char) Integer.parseInt(s.substring(i, i + 4), 16));
            i += 4;
          }
          default -> b.append(e);
        }
      }
      throw error("unterminated string");
    }

    private void ws() {
      while (i < s.length() && Character.isWhitespace(s.charAt(i))) i++;
    }

    private boolean peek(char c) {
      if (i < s.length() && s.charAt(i) == c) {
        i++;
        return true;
      }
      return false;
    }

    private void expect(char c) {
      if (!peek(c)) throw error("expected '" + c + "'");
    }

    private IllegalArgumentException error(String what) {
      return new IllegalArgumentException("JSON: " + what + " at offset " + i);
    }
  }
}
