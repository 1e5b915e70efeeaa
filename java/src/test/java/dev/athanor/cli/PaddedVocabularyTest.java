package dev.athanor.cli;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.athanor.infer.Generator;
import dev.athanor.infer.SamplingConfig;
import dev.athanor.io.hf.HfFormatException;
import dev.athanor.io.hf.HfModelDir;
import dev.athanor.io.tokenizer.Tokenizer;
import dev.athanor.io.tokenizer.Tokenizers;
import dev.athanor.nn.ModelConfig;
import dev.athanor.nn.Transformer;
import dev.athanor.runtime.Device;
import java.nio.file.Path;
import java.util.Arrays;
import java.util.List;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * Issue 14, case 8: with a tokenizer smaller than the model's vocabulary (GPT-2's 50,257 tokens in a vocabulary padded to
 * 50,304 rows), {@code generate} failed mid-stream when it sampled a padding id, which has no text. Padding ids are now
 * never sampled, the CLI says so when it loads the model, and a tokenizer larger than the vocabulary is an error.
 */
class PaddedVocabularyTest {
  @TempDir static Path tmp;
  static Path padded;
  static final int TOKENS = 50257;
  static final ModelConfig CFG = ModelConfig.gpt2(50304, 128, 1, 32, 1);

  /**
   * A GPT-2 model with the padded vocabulary and no tokenizer.json (so GPT-2's r50k_base applies), whose padding rows of
   * the (tied) embedding are large: unmasked, the padding ids would have the largest logits most of the time.
   */
  @BeforeAll
  static void saveAPaddedModel() {
    padded = TestModels.save(tmp.resolve("padded"), CFG, 11, m -> TestModels.edit(m, "transformer.wte.weight", w -> {
      for (int i = TOKENS * CFG.hidden(); i < w.length; i++) w[i] *= 1000;
      return w;
    }));
  }

  @Test
  void case8PaddingIdsAreNeverGenerated() {
    Tokenizer tok = Tokenizers.gpt2();
    try (Transformer m = HfModelDir.loadModel(padded, Device.CPU)) {
      int[] prompt = tok.encode("The furnace");
      SamplingConfig greedy = new SamplingConfig(0f, 0, 1f, 0, 100, false);
      // the setup is meaningful: without the limit, padding ids are generated
      int[] unmasked = new Generator(m).generate(prompt, greedy, null);
      assertTrue(Arrays.stream(unmasked).anyMatch(id -> id >= TOKENS), "the model prefers padding ids");
      for (SamplingConfig sc : List.of(greedy, new SamplingConfig(1f, 0, 1f, 1, 100, false),
          new SamplingConfig(1.5f, 0, 0.99f, 2, 100, false), new SamplingConfig(0.8f, 40, 0.95f, 3, 100, false))) {
        int[] ids = new Generator(m, Models.sampledVocab(tok, m.config())).generate(prompt, sc, null);
        assertEquals(100, ids.length);
        for (int id : ids) assertTrue(id >= 0 && id < TOKENS, "padding id " + id + " generated with " + sc);
      }
    }
  }

  @Test
  void case8GenerateNotesThePaddingAndStreamsToTheEnd() {
    for (String temperature : new String[] {"0", "1"}) {
      CliTest.Out r = CliTest.run("generate", "--model", padded.toString(), "--prompt", "The furnace", "--max-tokens", "100",
          "--temperature", temperature, "--top-k", "0", "--top-p", "1", "--no-stop", "--device", "cpu");
      assertEquals(0, r.code(), r.err());
      assertEquals("athanor generate: note: the tokenizer has 50257 token ids and the model's vocabulary 50304 rows; ids 50257 "
          + "to 50303 have no text and are never generated\n", r.err());
      assertTrue(r.out().startsWith("The furnace") && r.out().length() > "The furnace".length() + 10, r.out());
    }
  }

  @Test
  void case8ATokenizerLargerThanTheVocabularyIsAnError() {
    ModelConfig small = ModelConfig.gpt2(50000, 16, 1, 16, 1);
    HfFormatException e = assertThrows(HfFormatException.class, () -> Models.sampledVocab(Tokenizers.gpt2(), small));
    assertTrue(e.getMessage().contains("has 50257 token ids but the model's vocabulary has only 50000 rows"), e.getMessage());
    assertEquals(TOKENS, Models.sampledVocab(Tokenizers.gpt2(), CFG));
    assertThrows(IllegalArgumentException.class, () -> {
      try (Transformer m = Transformer.create(small, Device.CPU)) {
        new Generator(m, 50001);
      }
    });
  }
}
