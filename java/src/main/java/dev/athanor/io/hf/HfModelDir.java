package dev.athanor.io.hf;

import com.google.gson.GsonBuilder;
import com.google.gson.JsonObject;
import dev.athanor.io.AtomicFiles;
import dev.athanor.io.FileProblems;
import dev.athanor.io.safetensors.SafetensorsException;
import dev.athanor.io.safetensors.SafetensorsSet;
import dev.athanor.io.safetensors.SafetensorsWriter;
import dev.athanor.io.safetensors.TensorEntry;
import dev.athanor.nn.Family;
import dev.athanor.nn.ModelConfig;
import dev.athanor.params.ParamSpec;
import dev.athanor.nn.Transformer;
import dev.athanor.runtime.Device;
import dev.athanor.tensor.DType;
import dev.athanor.tensor.Tensor;
import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.LinkOption;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.Collections;
import java.util.HashSet;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Objects;
import java.util.Set;
import java.util.TreeMap;
import java.util.regex.Pattern;
import java.util.stream.Stream;

/**
 * Hugging Face model directories ({@code config.json} plus {@code model.safetensors} or a sharded
 * {@code model.safetensors.index.json}) of the {@code gpt2} and {@code llama} model types.
 *
 * <p><b>Loading</b> accepts the files as published on the Hugging Face hub as well as what
 * {@code save_pretrained} writes today: GPT-2 tensors may lack the {@code transformer.} prefix (the hub's
 * original GPT-2 files), the non-parameter buffers {@code h.N.attn.bias}, {@code h.N.attn.masked_bias} and
 * Llama's {@code rotary_emb.inv_freq} are skipped, and a tied model's {@code lm_head.weight} is ignored when
 * present. Tensors come back under the canonical names of {@link ModelConfig#parameterSpecs()}, in that order.
 * Missing, extra and misshapen tensors are errors naming the directory or file.
 *
 * <p><b>Saving</b> writes {@code config.json} and the weights in {@code parameterSpecs()} order with metadata
 * {@code {"format": "pt"}} as transformers does, one file when the weights fit in {@code maxShardBytes}, else
 * numbered shards ({@code model-00001-of-00003.safetensors}) and an index. Each file is replaced atomically;
 * weight files of an earlier save that the new one does not use (a single file, an index, shards) are removed.
 * F32 weights round-trip bit-exactly through save and load.
 */
public final class HfModelDir {
  /** The default shard limit: 5 GB (decimal), as transformers' {@code max_shard_size="5GB"}. */
  public static final long DEFAULT_MAX_SHARD_BYTES = 5_000_000_000L;

  private static final Pattern GPT2_BUFFERS = Pattern.compile("(transformer\\.)?h\\.\\d+\\.attn\\.(bias|masked_bias)");
  private static final Pattern LLAMA_BUFFERS = Pattern.compile("model\\.layers\\.\\d+\\.self_attn\\.rotary_emb\\.inv_freq");
  private static final Pattern SHARD_NAME = Pattern.compile("model-\\d{5}-of-\\d{5}\\.safetensors");
  private static final String HEAD = "lm_head.weight";
  private static final int LIST_MAX = 8;
  /** More missing tensors than this are reported as a count, not looked up one by one. */
  private static final long MANY_MISSING = 100_000;

  private HfModelDir() {}

  /**
   * A loaded model: its config and every parameter as a host tensor, keyed by canonical name in
   * {@link ModelConfig#parameterSpecs()} order. {@link #close()} closes the tensors.
   *
   * @param config the model configuration from {@code config.json}
   * @param tensors the parameters (unmodifiable, ordered)
   */
  public record Loaded(ModelConfig config, Map<String, Tensor> tensors) implements AutoCloseable {
    public Loaded {
      Objects.requireNonNull(config, "config");
      tensors = Collections.unmodifiableMap(new LinkedHashMap<>(tensors));
    }

    /** The parameter called {@code name}; throws naming it when there is none. */
    public Tensor tensor(String name) {
      Tensor t = tensors.get(name);
      if (t == null) throw new IllegalArgumentException("no parameter \"" + name + "\" in this " + config.family() + " model");
      return t;
    }

    /** Closes every tensor. Idempotent. */
    @Override
    public void close() {
      for (Tensor t : tensors.values()) t.close();
    }
  }

  /** Reads the {@code config.json} of {@code dir}. */
  public static ModelConfig readConfig(Path dir) {
    return HfConfig.read(configFile(dir));
  }

  /** Loads {@code dir} with F32 tensors. */
  public static Loaded load(Path dir) {
    return load(dir, DType.F32);
  }

  /**
   * Loads {@code dir}, converting every parameter to {@code dtype} (F32, BF16 or F16).
   *
   * @throws HfFormatException naming the directory or file when the config or weights are missing,
   *     malformed, incomplete, have extra tensors or wrong shapes
   */
  public static Loaded load(Path dir, DType dtype) {
    Objects.requireNonNull(dtype, "dtype");
    if (!dtype.isFloating()) throw new IllegalArgumentException("model parameters load as F32, BF16 or F16, not " + dtype);
    ModelConfig config = readConfig(dir);
    try (SafetensorsSet set = SafetensorsSet.open(dir)) {
      long expected = tensorCount(config);
      if (expected - set.entries().size() > MANY_MISSING) { // listing them would take longer than it is worth
        throw new HfFormatException(dir + ": the weights do not match " + configFile(dir) + ": it describes " + expected
            + " tensors (" + config.layers() + " layers), the weights hold " + set.entries().size());
      }
      List<ParamSpec> specs = config.parameterSpecs();
      Map<String, String> fileName = checked(dir, config, specs, set);
      Map<String, Tensor> out = new LinkedHashMap<>();
      try {
        for (ParamSpec s : specs) out.put(s.name(), set.read(fileName.get(s.name()), dtype));
        return new Loaded(config, out);
      } catch (RuntimeException e) {
        for (Tensor t : out.values()) t.close();
        throw e;
      }
    } catch (SafetensorsException e) {
      throw new HfFormatException(e.getMessage(), e);
    }
  }

  /**
   * Reads the weights of {@code dir} into {@code model} one tensor at a time (each read into host memory as F32 and
   * copied to the model, then freed), so that loading holds one tensor besides the model: what a model whose weights
   * live on DISK needs ({@link Transformer#withoutWeights}). The directory is checked as {@link #load} checks it, and
   * its config must be the model's.
   */
  public static void loadInto(Path dir, Transformer model) {
    Objects.requireNonNull(model, "model");
    ModelConfig config = readConfig(dir);
    if (!config.equals(model.config())) {
      throw new IllegalArgumentException(dir + " holds another model: " + config + "; this model is " + model.config());
    }
    try (SafetensorsSet set = SafetensorsSet.open(dir)) {
      List<ParamSpec> specs = config.parameterSpecs();
      Map<String, String> fileName = checked(dir, config, specs, set);
      for (ParamSpec s : specs) {
        try (Tensor t = set.read(fileName.get(s.name()), DType.F32)) {
          model.loadWeight(s.name(), t);
        }
      }
    } catch (SafetensorsException e) {
      throw new HfFormatException(e.getMessage(), e);
    }
  }

  /**
   * Each parameter's name in the files ({@link #resolve}), after checking that every tensor has its parameter's shape
   * and a floating dtype.
   */
  private static Map<String, String> checked(Path dir, ModelConfig config, List<ParamSpec> specs, SafetensorsSet set) {
    Map<String, String> fileName = resolve(dir, config, specs, set);
    for (ParamSpec s : specs) {
      String fn = fileName.get(s.name());
      TensorEntry e = set.entry(fn);
      if (!Arrays.equals(e.shape(), s.shape())) {
        throw new HfFormatException(set.fileOf(fn) + ": tensor \"" + fn + "\" has shape " + Arrays.toString(e.shape())
            + ", expected " + Arrays.toString(s.shape()) + " for the model of " + configFile(dir));
      }
      if (!Set.of("F32", "F16", "BF16", "F64").contains(e.dtype())) {
        throw new HfFormatException(set.fileOf(fn) + ": tensor \"" + fn + "\" has dtype " + e.dtype()
            + "; model parameters must be floating point (F32, F16, BF16, F64)");
      }
    }
    return fileName;
  }

  /** The number of parameter tensors of {@code c}, without listing them (a config may claim millions of layers). */
  static long tensorCount(ModelConfig c) {
    int one = withLayers(c, 1).parameterSpecs().size(), two = withLayers(c, 2).parameterSpecs().size();
    return one + (long) (two - one) * (c.layers() - 1);
  }

  private static ModelConfig withLayers(ModelConfig c, int layers) {
    return new ModelConfig(c.family(), c.vocabSize(), c.maxSeqLen(), layers, c.hidden(), c.heads(), c.kvHeads(),
        c.intermediate(), c.normEps(), c.ropeTheta(), c.tiedEmbeddings(), c.bosTokenId(), c.eosTokenId());
  }

  /** Maps each canonical name to the name it has in the files; throws listing missing and extra tensors. */
  private static Map<String, String> resolve(Path dir, ModelConfig config, List<ParamSpec> specs, SafetensorsSet set) {
    Map<String, String> found = new LinkedHashMap<>();
    List<String> missing = new ArrayList<>();
    Set<String> used = new HashSet<>();
    for (ParamSpec s : specs) {
      String name = s.name();
      List<String> candidates = new ArrayList<>(List.of(name));
      if (config.family() == Family.GPT2 && name.startsWith("transformer.")) {
        candidates.add(name.substring("transformer.".length()));
      }
      String hit = null;
      for (String c : candidates) {
        if (!set.contains(c)) continue;
        if (hit != null) {
          throw new HfFormatException(dir + ": holds both \"" + hit + "\" and \"" + c + "\" for the same parameter");
        }
        hit = c;
      }
      if (hit == null) {
        missing.add(name);
      } else {
        found.put(name, hit);
        used.add(hit);
      }
    }
    Pattern buffers = config.family() == Family.GPT2 ? GPT2_BUFFERS : LLAMA_BUFFERS;
    List<String> extra = new ArrayList<>();
    for (String n : set.entries().keySet()) {
      if (used.contains(n) || buffers.matcher(n).matches() || (config.tiedEmbeddings() && n.equals(HEAD))) continue;
      extra.add(n);
    }
    if (!missing.isEmpty() || !extra.isEmpty()) {
      StringBuilder sb = new StringBuilder(dir.toString()).append(": the weights do not match ").append(configFile(dir));
      sb.append(" (").append(config.family()).append(", ").append(config.layers()).append(" layers, ")
          .append(config.tiedEmbeddings() ? "tied" : "untied").append(" head)");
      if (!missing.isEmpty()) sb.append("; missing ").append(list(missing));
      if (!extra.isEmpty()) sb.append("; unexpected ").append(list(extra));
      throw new HfFormatException(sb.toString());
    }
    return found;
  }

  private static String list(List<String> names) {
    StringBuilder sb = new StringBuilder().append(names.size()).append(names.size() == 1 ? " tensor: " : " tensors: ");
    for (int i = 0; i < Math.min(names.size(), LIST_MAX); i++) sb.append(i == 0 ? "" : ", ").append(names.get(i));
    if (names.size() > LIST_MAX) sb.append(", ... (").append(names.size() - LIST_MAX).append(" more)");
    return sb.toString();
  }

  private static Path configFile(Path dir) {
    Objects.requireNonNull(dir, "dir");
    if (!Files.exists(dir)) throw new HfFormatException(dir + ": no such model directory");
    if (!Files.isDirectory(dir)) throw new HfFormatException(dir + ": not a directory (expected a model directory)");
    Path c = dir.resolve(HfConfig.FILE_NAME);
    String problem = FileProblems.notRegularFile(c);
    if (problem != null && !Files.exists(c, LinkOption.NOFOLLOW_LINKS)) {
      throw new HfFormatException(dir + ": no " + HfConfig.FILE_NAME + " (expected a Hugging Face model directory with "
          + HfConfig.FILE_NAME + " and " + SafetensorsSet.SINGLE + ")");
    }
    if (problem != null) throw new HfFormatException(c + " " + problem + " (expected the model's JSON configuration)");
    return c;
  }

  // ------------------------------------------------------------------ saving

  /** A model on {@code device} in its default compute dtype, with the weights of the directory {@code dir}. */
  public static Transformer loadModel(Path dir, Device device) {
    return loadModel(dir, c -> Transformer.create(c, device));
  }

  /** A model on {@code device} computing in {@code computeDtype}, with the weights of the directory {@code dir}. */
  public static Transformer loadModel(Path dir, Device device, DType computeDtype) {
    return loadModel(dir, c -> new Transformer(c, device, computeDtype));
  }

  private static Transformer loadModel(Path dir, java.util.function.Function<ModelConfig, Transformer> make) {
    try (Loaded loaded = load(dir)) {
      Transformer m = make.apply(loaded.config());
      try {
        m.loadWeights(loaded.tensors());
        return m;
      } catch (RuntimeException e) {
        m.close();
        throw e;
      }
    }
  }

  /** Saves with the default shard limit ({@value #DEFAULT_MAX_SHARD_BYTES} bytes). */
  public static void save(Path dir, ModelConfig config, Map<String, Tensor> tensors, DType dtype) {
    save(dir, config, tensors, dtype, DEFAULT_MAX_SHARD_BYTES);
  }

  /**
   * Writes {@code config.json} and the weights of {@code config} to {@code dir} (created if needed), converting
   * them to {@code dtype} (F32, BF16 or F16). {@code tensors} must hold exactly the parameters of
   * {@link ModelConfig#parameterSpecs()} under those names, with those shapes, on any device.
   *
   * @param maxShardBytes the largest weight file, in bytes of tensor data; larger models are split into shards
   *     (a single tensor larger than this gets a shard of its own)
   * @throws IllegalArgumentException when the tensors do not match the config (nothing is written)
   * @throws HfFormatException naming the file when writing fails
   */
  public static void save(Path dir, ModelConfig config, Map<String, Tensor> tensors, DType dtype, long maxShardBytes) {
    Objects.requireNonNull(dir, "dir");
    Objects.requireNonNull(config, "config");
    Objects.requireNonNull(tensors, "tensors");
    Objects.requireNonNull(dtype, "dtype");
    if (!dtype.isFloating()) throw new IllegalArgumentException("model parameters save as F32, BF16 or F16, not " + dtype);
    if (maxShardBytes <= 0) throw new IllegalArgumentException("maxShardBytes must be > 0, got " + maxShardBytes);
    Map<String, Tensor> ordered = ordered(config, tensors);
    try {
      Files.createDirectories(dir);
    } catch (IOException e) {
      throw new HfFormatException(dir + ": cannot create the model directory: " + FileProblems.reason(e), e);
    }
    List<Map<String, Tensor>> shards = split(ordered, dtype, maxShardBytes);
    Map<String, String> meta = Map.of("format", "pt");
    try {
      if (shards.size() == 1) {
        SafetensorsWriter.write(dir.resolve(SafetensorsSet.SINGLE), ordered, meta, dtype);
        AtomicFiles.delete(dir.resolve(SafetensorsSet.INDEX));
        deleteStaleShards(dir, Set.of());
      } else {
        Map<String, String> weightMap = new TreeMap<>();
        Set<String> names = new HashSet<>();
        long total = 0;
        for (int i = 0; i < shards.size(); i++) {
          String name = String.format("model-%05d-of-%05d.safetensors", i + 1, shards.size());
          names.add(name);
          SafetensorsWriter.write(dir.resolve(name), shards.get(i), meta, dtype);
          for (Map.Entry<String, Tensor> e : shards.get(i).entrySet()) {
            weightMap.put(e.getKey(), name);
            total += e.getValue().numel() * dtype.byteSize();
          }
        }
        // a single file would take precedence over the index: remove it before the index appears
        AtomicFiles.delete(dir.resolve(SafetensorsSet.SINGLE));
        AtomicFiles.writeString(dir.resolve(SafetensorsSet.INDEX), indexJson(total, weightMap));
        deleteStaleShards(dir, names);
      }
    } catch (IOException e) {
      throw new HfFormatException(dir + ": cannot write the weights: " + FileProblems.reason(e), e);
    } catch (SafetensorsException e) {
      throw new HfFormatException(e.getMessage(), e);
    }
    HfConfig.write(config, dtype, dir.resolve(HfConfig.FILE_NAME));
  }

  /** The tensors in parameterSpecs order, checked against the config. */
  private static Map<String, Tensor> ordered(ModelConfig config, Map<String, Tensor> tensors) {
    Map<String, Tensor> ordered = new LinkedHashMap<>();
    List<String> missing = new ArrayList<>();
    for (ParamSpec s : config.parameterSpecs()) {
      Tensor t = tensors.get(s.name());
      if (t == null) {
        missing.add(s.name());
        continue;
      }
      if (!Arrays.equals(t.shape(), s.shape())) {
        throw new IllegalArgumentException("parameter \"" + s.name() + "\" has shape " + Arrays.toString(t.shape())
            + ", expected " + Arrays.toString(s.shape()));
      }
      if (!t.dtype().isFloating()) {
        throw new IllegalArgumentException("parameter \"" + s.name() + "\" has dtype " + t.dtype() + "; expected a floating type");
      }
      ordered.put(s.name(), t);
    }
    List<String> extra = new ArrayList<>();
    for (String n : tensors.keySet()) if (!ordered.containsKey(n)) extra.add(n);
    if (!missing.isEmpty() || !extra.isEmpty()) {
      throw new IllegalArgumentException("the tensors do not match the " + config.family() + " config"
          + (missing.isEmpty() ? "" : "; missing " + list(missing)) + (extra.isEmpty() ? "" : "; unexpected " + list(extra)));
    }
    return ordered;
  }

  /** Splits as transformers does: a new shard starts when the next tensor would push the current one past the limit. */
  private static List<Map<String, Tensor>> split(Map<String, Tensor> ordered, DType dtype, long maxShardBytes) {
    List<Map<String, Tensor>> shards = new ArrayList<>();
    Map<String, Tensor> cur = new LinkedHashMap<>();
    long size = 0;
    for (Map.Entry<String, Tensor> e : ordered.entrySet()) {
      long bytes = e.getValue().numel() * dtype.byteSize();
      if (!cur.isEmpty() && size + bytes > maxShardBytes) {
        shards.add(cur);
        cur = new LinkedHashMap<>();
        size = 0;
      }
      cur.put(e.getKey(), e.getValue());
      size += bytes;
    }
    shards.add(cur); // possibly empty: a model always has tensors, but keep one file regardless
    return shards;
  }

  private static String indexJson(long totalBytes, Map<String, String> weightMap) {
    JsonObject meta = new JsonObject();
    meta.addProperty("total_size", totalBytes);
    JsonObject wm = new JsonObject();
    weightMap.forEach(wm::addProperty);
    JsonObject root = new JsonObject();
    root.add("metadata", meta);
    root.add("weight_map", wm);
    return new GsonBuilder().setPrettyPrinting().disableHtmlEscaping().create().toJson(root) + "\n";
  }

  private static void deleteStaleShards(Path dir, Set<String> keep) throws IOException {
    List<Path> stale = new ArrayList<>();
    try (Stream<Path> s = Files.list(dir)) {
      s.forEach(p -> {
        String n = p.getFileName().toString();
        if (SHARD_NAME.matcher(n).matches() && !keep.contains(n) && Files.isRegularFile(p)) stale.add(p);
      });
    }
    for (Path p : stale) AtomicFiles.delete(p);
  }
}
