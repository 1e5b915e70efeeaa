package dev.athanor.cli;

import dev.athanor.io.hf.HfConfig;
import dev.athanor.io.hf.HfModelDir;
import dev.athanor.io.tokenizer.Tokenizer;
import dev.athanor.io.tokenizer.Tokenizers;
import dev.athanor.nn.ModelConfig;
import dev.athanor.nn.Transformer;
import dev.athanor.runtime.Cuda;
import dev.athanor.runtime.Device;
import java.io.IOException;
import java.io.UncheckedIOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardCopyOption;

/** Shared by the commands: picking the device, building or loading a model, finding its tokenizer. */
final class Models {
  private Models() {}

  /** "auto" (CUDA when available, else the CPU), "cpu", "cuda" or "cuda:N"; CUDA is checked to exist. */
  static Device device(String spec) {
    if (spec == null || spec.equalsIgnoreCase("auto")) return Cuda.isAvailable() ? Device.cuda(0) : Device.CPU;
    Device d = Device.parse(spec);
    if (d.isCuda()) {
      if (!Cuda.isAvailable()) throw new IllegalArgumentException("--device " + spec + ": CUDA is unavailable: " + Cuda.unavailableReason());
      Cuda.checkDevice(d);
    }
    return d;
  }

  /**
   * Applies --threads N (the CPU backend's thread count; default: the CPUs this process may run on,
   * its affinity mask). Results do not depend on it.
   */
  static void cpuThreads(Flags f) {
    if (!f.has("threads")) return;
    int n = f.integer("threads", 0);
    if (n < 1) throw new IllegalArgumentException("--threads must be >= 1, got " + n);
    dev.athanor.runtime.NativeRuntime.setCpuThreads(n);
  }

  /** A model loaded from a Hugging Face directory onto {@code device}. */
  static Transformer load(Path dir, Device device) {
    return HfModelDir.loadModel(dir, device);
  }


  /** The model configuration named by --model DIR, --config FILE or --preset NAME (default gpt2-tiny). */
  static ModelConfig config(Flags f) {
    int given = (f.has("model") ? 1 : 0) + (f.has("config") ? 1 : 0) + (f.has("preset") ? 1 : 0);
    if (given > 1) throw new IllegalArgumentException("give only one of --model, --config and --preset");
    ModelConfig c;
    if (f.has("model")) c = HfConfig.read(f.path("model", null).resolve(HfConfig.FILE_NAME));
    else if (f.has("config")) c = HfConfig.read(f.path("config", null));
    else c = ModelConfig.preset(f.str("preset", "gpt2-tiny"));
    if (f.has("context")) c = c.withMaxSeqLen(f.integer("context", c.maxSeqLen()));
    return c;
  }

  /** The tokenizer of a model directory (its tokenizer.json, or GPT-2's r50k_base), or GPT-2's for a fresh model. */
  static Tokenizer tokenizer(Path modelDir, ModelConfig c) {
    if (modelDir != null) {
      try {
        return Tokenizers.forModelDir(modelDir, c);
      } catch (IOException e) {
        throw new UncheckedIOException("cannot read the tokenizer of " + modelDir + ": " + e.getMessage(), e);
      }
    }
    if (c.vocabSize() < 50257) {
      throw new IllegalArgumentException("a new model with vocab " + c.vocabSize() + " has no tokenizer: GPT-2's r50k_base needs"
          + " vocab >= 50257; train on token shards (.bin) instead of text, or load a --model directory with a tokenizer.json");
    }
    return Tokenizers.gpt2();
  }

  /**
   * Llama-family models are trained with a beginning-of-sequence token in front of every text (their
   * tokenizer.json adds it in a post-processor, which our tokenizers do not run): prepends it when the model
   * is a Llama, the tokenizer has one, and the text does not already start with it.
   */
  static int[] withBos(ModelConfig c, Tokenizer tok, int[] ids) {
    if (c.family() != dev.athanor.nn.Family.LLAMA || tok.bosToken().isEmpty()) return ids;
    int bos = tok.bosToken().getAsInt();
    if (bos >= c.vocabSize() || ids.length > 0 && ids[0] == bos) return ids;
    int[] out = new int[ids.length + 1];
    out[0] = bos;
    System.arraycopy(ids, 0, out, 1, ids.length);
    return out;
  }

  /** Copies the tokenizer files of {@code from} (when any) into the saved model directory {@code to}. */
  static void copyTokenizerFiles(Path from, Path to) throws IOException {
    if (from == null) return;
    for (String name : new String[] {"tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "generation_config.json"}) {
      Path src = from.resolve(name);
      if (Files.isRegularFile(src) && !src.toAbsolutePath().normalize().equals(to.resolve(name).toAbsolutePath().normalize())) {
        Files.copy(src, to.resolve(name), StandardCopyOption.REPLACE_EXISTING);
      }
    }
  }
}
