package dev.athanor.io.tokenizer;

import dev.athanor.nn.Family;
import dev.athanor.nn.ModelConfig;
import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;

/** Finding the tokenizer of a model. */
public final class Tokenizers {
  private Tokenizers() {}

  /** GPT-2's r50k_base tokenizer (the shared {@link Gpt2Tokenizer#instance()}). */
  public static Tokenizer gpt2() {
    return Gpt2Tokenizer.instance();
  }

  /**
   * The tokenizer of the model in {@code dir}: {@code dir/tokenizer.json} if present (an {@link HfTokenizer} with
   * the BOS/EOS ids of {@code config}), else GPT-2's r50k_base for a GPT-2 model whose vocabulary holds its 50,257
   * tokens.
   *
   * @throws IOException if {@code tokenizer.json} cannot be read
   * @throws IllegalArgumentException if there is no tokenizer for the model, if {@code tokenizer.json} is malformed,
   *     or if it has more tokens than the model's vocabulary
   * @throws IllegalStateException if {@code tokenizer.json} exists but Hugging Face's tokenizers library cannot be
   *     loaded here (the message names the platform)
   */
  public static Tokenizer forModelDir(Path dir, ModelConfig config) throws IOException {
    Path json = dir.resolve("tokenizer.json");
    if (Files.isRegularFile(json)) {
      HfTokenizer t = HfTokenizer.load(json, config.bosTokenId(), config.eosTokenId());
      if (t.vocabSize() > config.vocabSize()) {
        t.close();
        throw new IllegalArgumentException(json + " has " + t.vocabSize() + " token ids but the model's vocabulary has "
            + "only " + config.vocabSize() + " rows");
      }
      return t;
    }
    if (config.family() == Family.GPT2 && config.vocabSize() >= Gpt2Tokenizer.VOCAB_SIZE) {
      return gpt2();
    }
    throw new IllegalArgumentException("no tokenizer.json found in " + dir + "; only GPT-2 models (vocabulary of at "
        + "least " + Gpt2Tokenizer.VOCAB_SIZE + " tokens) fall back to the r50k_base tokenizer (this one: "
        + config.family().hfModelType() + ", vocabulary " + config.vocabSize() + ")");
  }
}
