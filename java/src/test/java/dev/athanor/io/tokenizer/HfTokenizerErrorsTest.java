package dev.athanor.io.tokenizer;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;
import static org.junit.jupiter.api.Assumptions.assumeTrue;

import com.google.gson.JsonObject;
import com.google.gson.JsonParser;
import java.nio.file.Files;
import java.nio.file.NoSuchFileException;
import java.nio.file.Path;
import java.util.function.Consumer;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * Malformed tokenizer.json files fail with messages that name the file and the problem (Hugging Face's own
 * message); components the old hand-written reader refused now load; bad ids and closed tokenizers are refused.
 */
class HfTokenizerErrorsTest {
  @TempDir Path dir;
  private int files;

  @BeforeAll
  static void library() {
    assumeTrue(HfTokenizer.isAvailable(), HfTokenizer.unavailableReason());
  }

  private Path write(String text) throws Exception {
    Path p = dir.resolve("tok" + files++ + ".json");
    Files.writeString(p, text);
    return p;
  }

  /** Loads {@code text}; expects an IllegalArgumentException naming the file and containing every fragment. */
  private void rejects(String text, String... fragments) throws Exception {
    Path p = write(text);
    IllegalArgumentException e = assertThrows(IllegalArgumentException.class, () -> HfTokenizer.load(p).close());
    assertTrue(e.getMessage().contains(p.toString()), e.getMessage());
    for (String f : fragments) assertTrue(e.getMessage().contains(f), "\"" + f + "\" in: " + e.getMessage());
  }

  private static JsonObject edited(Consumer<JsonObject> edit) {
    JsonObject j = HfSentencePieceTest.json(false, true, true);
    edit.accept(j);
    return j;
  }

  /** The small SentencePiece-style file, changed by {@code edit}. */
  private void rejectsEdited(Consumer<JsonObject> edit, String... fragments) throws Exception {
    rejects(edited(edit).toString(), fragments);
  }

  private HfTokenizer loadEdited(Consumer<JsonObject> edit) throws Exception {
    return HfTokenizer.load(write(edited(edit).toString()));
  }

  private static JsonObject model(JsonObject j) {
    return j.getAsJsonObject("model");
  }

  @Test
  void notJson() throws Exception {
    rejects("{\"model\": ", "EOF while parsing");
    rejects("[1, 2]", "expected struct Tokenizer");
    rejects("", "EOF while parsing");
    rejects("{}", "Model missing");
    rejects("[".repeat(100_000), "expected struct Tokenizer");
    rejects("{\"model\": {\"type\": \"BPE\"} trailing", "rejected by the tokenizers library");
  }

  @Test
  void malformedParts() throws Exception {
    rejects("{\"model\": {\"type\": \"Sideways\", \"vocab\": {}}}", "did not match any variant");
    // the library names the kind of component ("NormalizerUntagged"), the quoted text the one it is
    rejectsEdited(j -> j.add("normalizer", JsonParser.parseString("{\"type\": \"NoSuchNormalizer\"}")), "Normalizer",
        "near: ", "NoSuchNormalizer");
    rejectsEdited(j -> j.add("pre_tokenizer", JsonParser.parseString("{\"type\": \"Split\", \"pattern\": "
        + "{\"String\": \"x\"}, \"behavior\": \"Sideways\", \"invert\": false}")), "Sideways");
    rejectsEdited(j -> j.add("pre_tokenizer", JsonParser.parseString("{\"type\": \"Split\", \"pattern\": "
        + "{\"Regex\": \"(unclosed\"}, \"behavior\": \"Isolated\", \"invert\": false}")), "rejected");
    rejectsEdited(j -> model(j).getAsJsonArray("merges").add("▁ zz"), "zz");
    rejectsEdited(j -> model(j).getAsJsonObject("vocab").addProperty("neg", -1), "-1");
    // a huge id (the library takes any u32): refused before a vocabulary that large is allocated
    rejectsEdited(j -> model(j).getAsJsonObject("vocab").addProperty("huge", 2_000_000_000L), "huge", "2000000000");
    rejectsEdited(j -> model(j).getAsJsonObject("vocab").addProperty("str", "x"), "rejected");
    rejectsEdited(j -> model(j).addProperty("byte_fallback", "yes"), "rejected");
    rejectsEdited(j -> j.add("added_tokens", JsonParser.parseString("{}")), "rejected");
    rejectsEdited(j -> j.add("added_tokens", JsonParser.parseString("[{\"content\": \"x\"}]")), "id");
    rejectsEdited(j -> model(j).add("vocab", new JsonObject()), "rejected");
  }

  /** Components the old hand-written reader refused load, and behave as Hugging Face's library has them. */
  @Test
  void componentsTheOldReaderRefusedLoad() throws Exception {
    try (HfTokenizer t = loadEdited(j -> j.add("normalizer", JsonParser.parseString("{\"type\": \"BertNormalizer\", "
        + "\"clean_text\": true, \"handle_chinese_chars\": true, \"strip_accents\": true, \"lowercase\": true}")))) {
      // lower case, accents stripped, and no "▁" any more: the pieces "h" and "e"
      assertArrayEquals(new int[] {260, 261}, t.encode("HÉ"));
    }
    try (HfTokenizer t = loadEdited(j -> {
      j.add("normalizer", null);
      j.add("pre_tokenizer", JsonParser.parseString("{\"type\": \"Whitespace\"}"));
    })) {
      // split at the space, no "▁": "hello" is h + ello, "world" is w + or + ld
      assertArrayEquals(new int[] {260, 270, 264, 273, 275}, t.encode("hello world"));
    }
    try (HfTokenizer t = loadEdited(j -> model(j).addProperty("dropout", 0.0))) {
      assertArrayEquals(new int[] {HfSentencePieceTest.HELLO}, t.encode("hello"));
    }
    for (String name : new String[] {"unigram", "wordpiece"}) {
      try (HfTokenizer t = HfFixturesTest.load(name, dir)) {
        assertTrue(t.encode("Hello world").length >= 2, name);
      }
    }
  }

  @Test
  void unknownCharactersWithoutUnkTokenOrByteFallbackAreDropped() throws Exception {
    // as in Hugging Face (the old hand-written reader threw instead)
    try (HfTokenizer t = loadEdited(j -> {
      model(j).add("unk_token", null);
      model(j).addProperty("byte_fallback", false);
    })) {
      assertArrayEquals(new int[] {HfSentencePieceTest.H_}, t.encode("hi"));
      assertArrayEquals(new int[] {HfSentencePieceTest.HELLO}, t.encode("hello€"));
    }
  }

  @Test
  void anUnkTokenOutsideTheVocabularyFailsWhenItIsNeeded() throws Exception {
    // as in Hugging Face: the file loads; encoding fails (with a message, not a crash) only where the unknown token is
    // needed
    try (HfTokenizer t = loadEdited(j -> {
      model(j).addProperty("unk_token", "<nope>");
      model(j).addProperty("byte_fallback", false);
    })) {
      assertArrayEquals(new int[] {HfSentencePieceTest.HELLO}, t.encode("hello"));
      IllegalArgumentException e = assertThrows(IllegalArgumentException.class, () -> t.encode("hello€"));
      assertTrue(e.getMessage().contains("cannot encode") && e.getMessage().contains("<nope>")
          && e.getMessage().contains(t.source()), e.getMessage());
      assertArrayEquals(new int[] {HfSentencePieceTest.HELLO}, t.encode("hello"), "still usable");
    }
  }

  @Test
  void missingFileIsAnIoError() {
    assertThrows(NoSuchFileException.class, () -> HfTokenizer.load(dir.resolve("absent.json")));
  }

  @Test
  void badIds() throws Exception {
    Path p = write(edited(j -> model(j).getAsJsonObject("vocab").addProperty("gap", 400)).toString()); // 278..399 unused
    try (HfTokenizer t = HfTokenizer.load(p)) {
      assertEquals(401, t.vocabSize());
      for (int bad : new int[] {-1, 401, 300, Integer.MIN_VALUE}) {
        IllegalArgumentException e = assertThrows(IllegalArgumentException.class, () -> t.decode(new int[] {259, bad}));
        assertTrue(e.getMessage().contains(Integer.toString(bad)) && e.getMessage().contains(p.toString()), e.getMessage());
        assertThrows(IllegalArgumentException.class, () -> t.streamDecoder().push(bad));
      }
      assertEquals("gap", t.decode(new int[] {400}));
    }
    IllegalArgumentException e = assertThrows(IllegalArgumentException.class, () -> HfTokenizer.load(p, 300, -1));
    assertTrue(e.getMessage().contains("bos token id 300") && e.getMessage().contains(p.toString()), e.getMessage());
    assertThrows(IllegalArgumentException.class, () -> HfTokenizer.load(p, -3, 2));
  }

  @Test
  void closeIsIdempotentAndUseAfterCloseThrows() throws Exception {
    HfTokenizer t = HfTokenizer.load(write(HfSentencePieceTest.json(false, true, true).toString()));
    assertArrayEquals(new int[] {HfSentencePieceTest.HELLO}, t.encode("hello"));
    t.close();
    t.close();
    IllegalStateException e = assertThrows(IllegalStateException.class, () -> t.encode("hello"));
    assertTrue(e.getMessage().contains("closed"), e.getMessage());
    assertThrows(IllegalStateException.class, () -> t.decode(new int[] {HfSentencePieceTest.HELLO}));
    assertEquals(278, t.vocabSize()); // what lives in Java stays readable
  }
}
