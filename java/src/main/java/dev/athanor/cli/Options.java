package dev.athanor.cli;

import dev.athanor.io.hf.HfConfig;
import dev.athanor.memory.MemoryManager;
import dev.athanor.memory.Tier;
import dev.athanor.nn.ModelConfig;
import dev.athanor.offload.OffloadConfig;
import dev.athanor.runtime.Device;
import dev.athanor.runtime.NativeRuntime;
import java.lang.annotation.ElementType;
import java.lang.annotation.Retention;
import java.lang.annotation.RetentionPolicy;
import java.lang.annotation.Target;
import java.lang.reflect.Field;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Iterator;
import java.util.List;
import java.util.Locale;
import picocli.CommandLine;
import picocli.CommandLine.ITypeConverter;
import picocli.CommandLine.Model.CommandSpec;
import picocli.CommandLine.Model.OptionSpec;
import picocli.CommandLine.Option;
import picocli.CommandLine.ParameterException;
import picocli.CommandLine.TypeConversionException;

/**
 * How the commands' options are typed and checked: converters for sizes ("12g"), devices, presets, numbers and
 * booleans; {@link Range} checks run after parsing; and the option sets several commands share ({@link RuntimeOptions},
 * {@link ModelOptions}). Every failure is a picocli {@link ParameterException} (exit code 2) whose message names the
 * flag, the value and what was expected.
 */
final class Options {
  private Options() {}

  /** Registers the converters for every int, long, float and boolean option of {@code cl} and its subcommands. */
  static CommandLine registerConverters(CommandLine cl) {
    cl.registerConverter(Integer.class, Options::parseInt);
    cl.registerConverter(int.class, Options::parseInt);
    cl.registerConverter(Long.class, Options::parseLong);
    cl.registerConverter(long.class, Options::parseLong);
    cl.registerConverter(Float.class, Options::parseFloat);
    cl.registerConverter(float.class, Options::parseFloat);
    return cl;
  }

  /** An integer; underscores may group digits ({@code 1_000_000}). */
  static int parseInt(String v) {
    try {
      return Integer.parseInt(v.trim().replace("_", ""));
    } catch (NumberFormatException e) {
      throw new TypeConversionException("'" + v + "' is not an integer");
    }
  }

  static long parseLong(String v) {
    try {
      return Long.parseLong(v.trim().replace("_", ""));
    } catch (NumberFormatException e) {
      throw new TypeConversionException("'" + v + "' is not an integer");
    }
  }

  static float parseFloat(String v) {
    try {
      float f = Float.parseFloat(v.trim());
      if (Float.isFinite(f)) return f;
    } catch (NumberFormatException e) {
      // below
    }
    throw new TypeConversionException("'" + v + "' is not a finite number");
  }

  /** A byte count with an optional binary unit: 123, 64k, 512m, 12g, 1t (see {@link MemoryManager#parseBytes}). */
  static final class Size implements ITypeConverter<Long> {
    @Override
    public Long convert(String v) {
      try {
        return MemoryManager.parseBytes(v);
      } catch (IllegalArgumentException e) {
        throw new TypeConversionException("'" + v + "' is not a size (expected e.g. 123, 64k, 512m, 12g or unlimited)");
      }
    }
  }

  /** A CPU thread count: from 1 to 4 per CPU this process may run on (at most {@link NativeRuntime#MAX_CPU_THREADS}). */
  static final class Threads implements ITypeConverter<Integer> {
    @Override
    public Integer convert(String v) {
      int n = parseInt(v);
      int cpus = Runtime.getRuntime().availableProcessors();
      int max = maxThreads();
      if (n < 1 || n > max) {
        throw new TypeConversionException(n + " is out of range (expected an integer in [1, " + max + "]: at most 4 threads per "
            + "CPU, and this process may run on " + cpus + (cpus == 1 ? " CPU)" : " CPUs)"));
      }
      return n;
    }

    static int maxThreads() {
      return (int) Math.min(NativeRuntime.MAX_CPU_THREADS, 4L * Runtime.getRuntime().availableProcessors());
    }
  }

  /** true/false, also yes/no, on/off, 1/0 (for options that take a value, such as {@code --shuffle true}). */
  static final class Bool implements ITypeConverter<Boolean> {
    @Override
    public Boolean convert(String v) {
      return switch (v.trim().toLowerCase(Locale.ROOT)) {
        case "true", "yes", "on", "1" -> true;
        case "false", "no", "off", "0" -> false;
        default -> throw new TypeConversionException("'" + v + "' is not a boolean (expected true or false)");
      };
    }
  }

  /** "auto", "cpu", "cuda" or "cuda:N" (whether that CUDA device exists is checked when the command runs). */
  static final class DeviceName implements ITypeConverter<String> {
    @Override
    public String convert(String v) {
      if (v.trim().equalsIgnoreCase("auto")) return "auto";
      try {
        return Device.parse(v).toString();
      } catch (IllegalArgumentException e) {
        throw new TypeConversionException("'" + v + "' is not a device (expected auto, cpu, cuda or cuda:N)");
      }
    }
  }

  /** A model preset name, checked against {@link ModelConfig#presets()}. */
  static final class Preset implements ITypeConverter<String> {
    @Override
    public String convert(String v) {
      if (!ModelConfig.presets().containsKey(v)) {
        throw new TypeConversionException("unknown model preset \"" + v + "\"; known: " + ModelConfig.presets().keySet());
      }
      return v;
    }
  }

  /** The preset names, for help and shell completion. */
  static final class PresetNames implements Iterable<String> {
    @Override
    public Iterator<String> iterator() {
      return ModelConfig.presets().keySet().iterator();
    }
  }

  /** Values a numeric option may take; checked by {@link #check} after parsing, when the option has a value. */
  @Retention(RetentionPolicy.RUNTIME)
  @Target(ElementType.FIELD)
  @interface Range {
    double min() default Double.NEGATIVE_INFINITY;

    double max() default Double.POSITIVE_INFINITY;

    /** Whether {@link #min()} itself is excluded. */
    boolean minExclusive() default false;

    /** Whether {@link #max()} itself is excluded. */
    boolean maxExclusive() default false;
  }

  /**
   * Checks that no single-valued option was given twice (picocli allows that inside argument groups, where it would
   * start a second instance of the group) and every {@link Range}; throws a usage error naming the flag, the
   * value(s) and what was expected.
   */
  static void check(CommandSpec spec) {
    for (OptionSpec o : spec.options()) {
      List<String> given = o.originalStringValues();
      if (!o.isMultiValue() && given.size() > 1) {
        throw usage(spec, "option '" + o.longestName() + "' should be given only once, got " + String.join(" and ", given));
      }
    }
    for (OptionSpec o : spec.options()) {
      if (!(o.userObject() instanceof Field f)) continue;
      Range r = f.getAnnotation(Range.class);
      Object v = o.getValue();
      if (r == null || !(v instanceof Number n)) continue;
      double d = n.doubleValue();
      if ((r.minExclusive() ? d > r.min() : d >= r.min()) && (r.maxExclusive() ? d < r.max() : d <= r.max())) continue;
      boolean integral = !(v instanceof Float || v instanceof Double);
      throw new ParameterException(spec.commandLine(), "Invalid value for option '" + o.longestName() + "': " + v
          + " is out of range (expected " + (integral ? "an integer " : "a number ") + describe(r, integral) + ")");
    }
  }

  private static String describe(Range r, boolean integral) {
    boolean lo = r.min() != Double.NEGATIVE_INFINITY, hi = r.max() != Double.POSITIVE_INFINITY;
    String min = number(r.min(), integral), max = number(r.max(), integral);
    if (lo && hi) return "in " + (r.minExclusive() ? "(" : "[") + min + ", " + max + (r.maxExclusive() ? ")" : "]");
    if (lo) return (r.minExclusive() ? "> " : ">= ") + min;
    return (r.maxExclusive() ? "< " : "<= ") + max;
  }

  private static String number(double v, boolean integral) {
    return integral || v == Math.rint(v) ? Long.toString((long) v) : Double.toString(v);
  }

  /** A usage error of {@code spec}'s command. */
  static ParameterException usage(CommandSpec spec, String message) {
    return new ParameterException(spec.commandLine(), message);
  }

  /** Where a command runs: the device, the CPU threads and the memory budgets of the tiers (an argument group). */
  static final class RuntimeOptions {
    @Option(names = "--device", paramLabel = "DEVICE", defaultValue = "auto", converter = DeviceName.class,
        description = "auto (CUDA when available, else the CPU), cpu, cuda or cuda:N. Default: ${DEFAULT-VALUE}")
    String device;

    @Option(names = "--threads", paramLabel = "N", converter = Threads.class,
        description = "CPU backend threads, at most 4 per CPU (default: the CPUs this process may run on); results do "
            + "not depend on it")
    Integer threads;

    @Option(names = "--mem-device", paramLabel = "SIZE", converter = Size.class,
        description = "memory budget per GPU (e.g. 70g; default: unlimited, or -Dathanor.budget.device)")
    Long memDevice;

    @Option(names = "--mem-pinned", paramLabel = "SIZE", converter = Size.class,
        description = "budget of page-locked host memory (e.g. 8g)")
    Long memPinned;

    @Option(names = "--mem-host", paramLabel = "SIZE", converter = Size.class,
        description = "budget of host memory (e.g. 12g; default: " + MemoryManager.DEFAULT_HOST_PERCENT
            + "%% of the memory available at start, or -Dathanor.budget.host)")
    Long memHost;

    @Option(names = "--mem-disk", paramLabel = "SIZE", converter = Size.class,
        description = "budget of the DISK tier's files (e.g. 500g)")
    Long memDisk;

    /** Applies --threads and the budgets, and returns the device (CUDA checked to exist). */
    Device apply() {
      applyBudgets();
      return Models.device(device);
    }

    /**
     * Applies --threads and the budgets, and returns the device named without checking that it is present: what
     * planning on paper needs (a plan for cuda made on a machine without a GPU; the device's free memory is then not
     * known, and only the budgets bound it).
     */
    Device applyForPlanning() {
      applyBudgets();
      return device == null || device.equalsIgnoreCase("auto") ? Models.device(device) : Device.parse(device);
    }

    private void applyBudgets() {
      if (threads != null) NativeRuntime.setCpuThreads(threads);
      budget(Tier.DEVICE, memDevice);
      budget(Tier.HOST_PINNED, memPinned);
      budget(Tier.HOST, memHost);
      budget(Tier.DISK, memDisk);
    }

    private static void budget(Tier tier, Long bytes) {
      if (bytes != null) MemoryManager.global().setBudget(tier, bytes);
    }
  }

  /** The model of {@code train} and {@code bench}: a preset, a config.json, or a Hugging Face directory (an argument group). */
  static final class ModelOptions {
    @Option(names = "--preset", paramLabel = "NAME", converter = Preset.class, completionCandidates = PresetNames.class,
        description = "a built-in model: ${COMPLETION-CANDIDATES} (default: gpt2-tiny)")
    String preset;

    @Option(names = "--config", paramLabel = "FILE", description = "a Hugging Face config.json (gpt2 or llama model_type)")
    Path config;

    @Option(names = "--model", paramLabel = "DIR",
        description = "a Hugging Face model directory (its config.json; train also starts from its weights)")
    Path model;

    @Option(names = "--context", paramLabel = "TOKENS", description = "override the model's context length")
    @Range(min = 1)
    Integer context;

    /** The configuration named by --model, --config or --preset (default gpt2-tiny), with --context applied. */
    ModelConfig config(CommandSpec spec) {
      List<String> given = new ArrayList<>();
      if (model != null) given.add("--model");
      if (config != null) given.add("--config");
      if (preset != null) given.add("--preset");
      if (given.size() > 1) {
        throw usage(spec, "give only one of --model, --config and --preset (got " + String.join(" and ", given) + ")");
      }
      ModelConfig c = model != null ? HfConfig.read(model.resolve(HfConfig.FILE_NAME))
          : config != null ? HfConfig.read(config) : ModelConfig.preset(preset != null ? preset : "gpt2-tiny");
      return context != null ? c.withMaxSeqLen(context) : c;
    }

    /** Whether any model option was given. */
    boolean given() {
      return model != null || config != null || preset != null || context != null;
    }
  }

  /** Where a training job's state lives: {@code --offload}, {@code --offload-dir}, {@code --offload-chunk} (an argument group). */
  static final class OffloadOptions {
    @Option(names = "--offload", paramLabel = "off|auto|PLAN.json", defaultValue = "off",
        description = "off: everything in memory; auto: plan from the budgets (AdamW's moments, then the gradients, "
            + "then the weights to DISK, as far as the job needs to fit in HOST memory; on cuda the F32 masters and AdamW's "
            + "moments to pinned host memory, then the moments to DISK, as far as --mem-device and --mem-host need, with "
            + "AdamW on the CPU, one GPU only (not with --dp yet); the plan is printed); PLAN.json: a plan written by athanor plan --json (CPU only). "
            + "Default: ${DEFAULT-VALUE}")
    String offload;

    @Option(names = "--offload-dir", paramLabel = "DIR",
        description = "where the DISK tier's files go (default: the DISK tier's directory, under java.io.tmpdir unless "
            + "-Dathanor.disk.dir says otherwise)")
    Path dir;

    @Option(names = "--offload-chunk", paramLabel = "SIZE", converter = Size.class,
        description = "bytes of one role the optimizer streams from DISK at a time, through 3 host buffers per role "
            + "(default: 4m; with --offload PLAN.json the plan's)")
    Long chunk;

    /** Whether --offload is off. */
    boolean off() {
      return offload == null || offload.equalsIgnoreCase("off");
    }

    /** Whether --offload is auto. */
    boolean auto() {
      return "auto".equalsIgnoreCase(offload);
    }

    /**
     * Checks the flags that need others, and the chunk: --offload-dir and --offload-chunk need offload on,
     * --offload-chunk is not for a plan file (which has its own), and a chunk is a positive multiple of 4 bytes.
     */
    void check(CommandSpec spec) {
      if (off() && dir != null) {
        throw usage(spec, "--offload-dir " + dir + " needs --offload auto or --offload PLAN.json (with --offload off nothing "
            + "goes to DISK)");
      }
      if (chunk != null && !auto()) {
        throw usage(spec, "--offload-chunk " + chunk + " needs --offload auto" + (off() ? "" : " (the plan file "
            + offload + " has its own chunk_bytes)"));
      }
      checkChunk(spec, chunk);
    }

    /** The chunk for --offload auto. */
    long chunkBytes() {
      return chunk != null ? chunk : OffloadConfig.DEFAULT_CHUNK_BYTES;
    }

    /** A usage error unless {@code chunk} (null: the default) is a positive multiple of 4 bytes. */
    static void checkChunk(CommandSpec spec, Long chunk) {
      if (chunk != null && (chunk < 4 || chunk % 4 != 0)) {
        throw usage(spec, "--offload-chunk " + chunk + " must be a positive multiple of 4 bytes (whole F32 elements)");
      }
    }
  }
}
