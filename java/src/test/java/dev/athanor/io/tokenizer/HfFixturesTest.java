package dev.athanor.io.tokenizer;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertNotNull;
import static org.junit.jupiter.api.Assertions.assertTrue;
import static org.junit.jupiter.api.Assumptions.assumeTrue;

import com.google.gson.JsonArray;
import com.google.gson.JsonElement;
import com.google.gson.JsonObject;
import com.google.gson.JsonParser;
import java.io.IOException;
import java.io.InputStream;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.OptionalInt;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.ValueSource;

/**
 * tokenizer.json files that Hugging Face's tokenizers library itself trained and saved (its npm package; see
 * tools/tokenizers/make-fixtures.mjs and test resources tokenizers/), one per common layout, with the ids and
 * decoded texts that library gave for 74 texts (Unicode, white-space runs, byte fallback, added tokens). Our
 * binding must give the same.
 */
class HfFixturesTest {
  @TempDir static Path dir;

  @BeforeAll
  static void library() {
    assumeTrue(HfTokenizer.isAvailable(), HfTokenizer.unavailableReason());
  }

  static String resource(String name) throws IOException {
    try (InputStream in = HfFixturesTest.class.getResourceAsStream("/tokenizers/" + name)) {
      assertNotNull(in, "test resource tokenizers/" + name);
      return new String(in.readAllBytes(), StandardCharsets.UTF_8);
    }
  }

  /** The fixture {@code name}.json, copied to {@code dir} and loaded. */
  static HfTokenizer load(String name, Path dir) throws IOException {
    Path p = dir.resolve(name + ".json");
    if (!Files.exists(p)) Files.writeString(p, resource(name + ".json"));
    return HfTokenizer.load(p);
  }

  @ParameterizedTest
  @ValueSource(strings = {"bytelevel-bpe", "llama3-style", "llama2-style", "metaspace-bpe", "unigram", "wordpiece"})
  void sameIdsAndTextsAsHuggingFace(String name) throws Exception {
    JsonObject expected = JsonParser.parseString(resource(name + ".expected.json")).getAsJsonObject();
    assertTrue(expected.get("library").getAsString().startsWith("tokenizers"));
    JsonArray cases = expected.getAsJsonArray("cases");
    try (HfTokenizer t = load(name, dir)) {
      for (JsonElement c : cases) {
        JsonObject o = c.getAsJsonObject();
        String text = o.get("text").getAsString();
        JsonArray a = o.getAsJsonArray("ids");
        int[] ids = new int[a.size()];
        for (int i = 0; i < ids.length; i++) ids[i] = a.get(i).getAsInt();
        assertArrayEquals(ids, t.encode(text), () -> name + " encode " + Gpt2TokenizerTest.escape(text));
        assertEquals(o.get("decoded").getAsString(), t.decode(ids), () -> name + " decode " + Gpt2TokenizerTest.escape(text));
      }
    }
    assertEquals(74, cases.size());
  }

  @Test
  void specialTokensAndVocabularySizes() throws Exception {
    try (HfTokenizer llama2 = load("llama2-style", dir); HfTokenizer bl = load("bytelevel-bpe", dir);
        HfTokenizer l3 = load("llama3-style", dir); HfTokenizer uni = load("unigram", dir);
        HfTokenizer wp = load("wordpiece", dir)) {
      assertEquals(OptionalInt.of(1), llama2.bosToken());
      assertEquals(OptionalInt.of(2), llama2.eosToken());
      assertEquals(OptionalInt.of(3 + 0xff), llama2.tokenId("<0xFF>"));
      int eot = bl.tokenId("<|endoftext|>").getAsInt();
      assertEquals(OptionalInt.of(eot), bl.bosToken());
      assertEquals(OptionalInt.of(eot), bl.eosToken());
      assertEquals(bl.tokenId("<|tool|>").getAsInt() + 1, bl.vocabSize(), "the added tokens come last");
      assertEquals(l3.tokenId("<|begin_of_text|>"), l3.bosToken());
      assertEquals(l3.tokenId("<|end_of_text|>"), l3.eosToken());
      assertEquals(OptionalInt.empty(), uni.bosToken());
      assertEquals(OptionalInt.of(1), uni.eosToken());
      assertEquals(OptionalInt.of(0), uni.tokenId("<unk>"));
      assertEquals(OptionalInt.empty(), wp.bosToken());
      assertEquals(OptionalInt.of(0), wp.tokenId("[UNK]"));
    }
  }
}
