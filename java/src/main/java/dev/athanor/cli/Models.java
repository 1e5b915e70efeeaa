package dev.athanor.cli;

import dev.athanor.io.FileProblems;
import dev.athanor.io.hf.HfFormatException;
import dev.athanor.io.hf.HfModelDir;
import dev.athanor.io.tokenizer.Tokenizer;
import dev.athanor.io.tokenizer.Tokenizers;
import dev.athanor.nn.ModelConfig;
import dev.athanor.nn.Transformer;
import dev.athanor.runtime.Cuda;
import dev.athanor.runtime.Device;
import dev.athanor.tensor.DType;
import java.io.IOException;
import java.io.UncheckedIOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardCopyOption;
import java.util.Locale;

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

  /** A model loaded from a Hugging Face directory onto {@code device}. */
  static Transformer load(Path dir, Device device) {
    return HfModelDir.loadModel(dir, device);
  }

  /** A floating-point dtype named on the command line: f32, bf16 or f16 (any case). */
  enum FloatType {
    F32, BF16, F16;

    DType dtype() {
      return DType.valueOf(name());
    }

    @Override
    public String toString() {
      return name().toLowerCase(Locale.ROOT);
    }
  }


  /** The tokenizer files of a model directory (read by the tokenizer, copied with a saved model). */
  private static final String[] TOKENIZER_FILES =
      {"tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "generation_config.json"};

  /** The tokenizer of a model directory (its tokenizer.json, or GPT-2's r50k_base), or GPT-2's for a fresh model. */
  static Tokenizer tokenizer(Path modelDir, ModelConfig c) {
    if (modelDir != null) {
      for (String name : TOKENIZER_FILES) {  // a FIFO would block the reader, a device never end
        Path p = modelDir.resolve(name);
        String problem = Files.exists(p) ? FileProblems.notRegularFile(p) : null;
        if (problem != null) throw new HfFormatException(p + " " + problem + " (expected the tokenizer's JSON file)");
      }
      try {
        return Tokenizers.forModelDir(modelDir, c);
      } catch (IOException e) {
        throw new UncheckedIOException("cannot read the tokenizer of " + modelDir + ": " + FileProblems.reason(e), e);
      }
    }
    if (c.vocabSize() < 50257) {
      throw new IllegalArgumentException("a new model with vocab " + c.vocabSize() + " has no tokenizer: GPT-2's r50k_base needs"
          + " vocab >= 50257; train on token shards (.bin) instead of text, or load a --model directory with a tokenizer.json");
    }
    return Tokenizers.gpt2();
  }

  /**
   * How many of the model's ids may be generated: the tokenizer's ids. A vocabulary padded beyond the tokenizer's
   * (GPT-2's 50,257 tokens in 50,304 rows) has ids with no text, which are never sampled; a tokenizer with more ids
   * than the model has rows does not belong to the model.
   */
  static int sampledVocab(Tokenizer tok, ModelConfig c) {
    if (tok.vocabSize() > c.vocabSize()) {
      throw new HfFormatException("the tokenizer (" + tok.id() + ") has " + tok.vocabSize() + " token ids but the model's "
          + "vocabulary has only " + c.vocabSize() + " rows: it is not this model's tokenizer; use the tokenizer.json the "
          + "model was trained with");
    }
    return tok.vocabSize();
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
    for (String name : TOKENIZER_FILES) {
      Path src = from.resolve(name);
      if (Files.isRegularFile(src) && !src.toAbsolutePath().normalize().equals(to.resolve(name).toAbsolutePath().normalize())) {
        Files.copy(src, to.resolve(name), StandardCopyOption.REPLACE_EXISTING);
      }
    }
  }
}
