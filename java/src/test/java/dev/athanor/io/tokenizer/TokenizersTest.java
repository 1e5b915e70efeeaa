package dev.athanor.io.tokenizer;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertInstanceOf;
import static org.junit.jupiter.api.Assertions.assertSame;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;
import static org.junit.jupiter.api.Assumptions.assumeTrue;

import dev.athanor.nn.Family;
import dev.athanor.nn.ModelConfig;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.OptionalInt;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

class TokenizersTest {
  @TempDir Path dir;

  private static ModelConfig llama(int vocab, int bos, int eos) {
    return new ModelConfig(Family.LLAMA, vocab, 64, 1, 16, 2, 2, 32, 1e-5f, 10000f, false, bos, eos);
  }

  @Test
  void tokenizerJsonWins() throws Exception {
    assumeTrue(HfTokenizer.isAvailable(), HfTokenizer.unavailableReason());
    Files.writeString(dir.resolve("tokenizer.json"), HfSentencePieceTest.json(false, true, true).toString());
    try (Tokenizer t = Tokenizers.forModelDir(dir, llama(300, 1, 2));
        Tokenizer none = Tokenizers.forModelDir(dir, llama(300, -1, -1));
        Tokenizer g = Tokenizers.forModelDir(dir, ModelConfig.gpt2(50257, 64, 1, 16, 2).withVocabSize(300))) {
      HfTokenizer hf = assertInstanceOf(HfTokenizer.class, t);
      assertEquals(OptionalInt.of(1), hf.bosToken());
      assertEquals(OptionalInt.of(2), hf.eosToken());
      assertEquals("hello world", t.decode(t.encode("hello world")));
      // the config's ids, not guessed ones
      assertEquals(OptionalInt.empty(), none.bosToken());
      assertEquals(OptionalInt.empty(), none.eosToken());
      // a GPT-2 model with its own tokenizer.json uses it too
      assertInstanceOf(HfTokenizer.class, g);
    }
  }

  @Test
  void tokenizerLargerThanTheModelIsRejected() throws Exception {
    assumeTrue(HfTokenizer.isAvailable(), HfTokenizer.unavailableReason());
    Files.writeString(dir.resolve("tokenizer.json"), HfSentencePieceTest.json(false, true, true).toString());
    IllegalArgumentException e = assertThrows(IllegalArgumentException.class,
        () -> Tokenizers.forModelDir(dir, llama(100, 1, 2)));
    assertTrue(e.getMessage().contains("278") && e.getMessage().contains("100"), e.getMessage());
  }

  @Test
  void gpt2FallsBackToR50k() throws Exception {
    assertSame(Gpt2Tokenizer.instance(), Tokenizers.forModelDir(dir, ModelConfig.preset("gpt2-tiny")));
    assertSame(Gpt2Tokenizer.instance(), Tokenizers.forModelDir(dir, ModelConfig.gpt2(50304, 64, 1, 16, 2)));
  }

  @Test
  void othersNeedATokenizerJson() {
    IllegalArgumentException e = assertThrows(IllegalArgumentException.class,
        () -> Tokenizers.forModelDir(dir, llama(50257, -1, -1)));
    assertTrue(e.getMessage().contains("no tokenizer.json") && e.getMessage().contains("r50k_base")
        && e.getMessage().contains(dir.toString()), e.getMessage());
    e = assertThrows(IllegalArgumentException.class,
        () -> Tokenizers.forModelDir(dir, ModelConfig.gpt2(1000, 64, 1, 16, 2)));
    assertTrue(e.getMessage().contains("no tokenizer.json"), e.getMessage());
  }
}
