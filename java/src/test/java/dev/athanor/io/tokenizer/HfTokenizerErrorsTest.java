package dev.athanor.io.tokenizer;

import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import com.google.gson.JsonArray;
import com.google.gson.JsonObject;
import com.google.gson.JsonParser;
import java.nio.file.Files;
import java.nio.file.NoSuchFileException;
import java.nio.file.Path;
import java.util.function.Consumer;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/** Malformed and unsupported tokenizer.json files fail with messages that name the file and the problem. */
class HfTokenizerErrorsTest {
  @TempDir Path dir;
  private int files;

  private Path write(String text) throws Exception {
    Path p = dir.resolve("tok" + files++ + ".json");
    Files.writeString(p, text);
    return p;
  }

  /** Loads {@code text}; expects an IllegalArgumentException naming the file and containing every fragment. */
  private void rejects(String text, String... fragments) throws Exception {
    Path p = write(text);
    IllegalArgumentException e = assertThrows(IllegalArgumentException.class, () -> HfTokenizer.load(p));
    assertTrue(e.getMessage().contains(p.toString()), e.getMessage());
    for (String f : fragments) assertTrue(e.getMessage().contains(f), "\"" + f + "\" in: " + e.getMessage());
  }

  /** The small SentencePiece-style file, changed by {@code edit}. */
  private void rejectsEdited(Consumer<JsonObject> edit, String... fragments) throws Exception {
    JsonObject j = HfSentencePieceTest.json(false, true, true);
    edit.accept(j);
    rejects(j.toString(), fragments);
  }

  private static JsonObject model(JsonObject j) {
    return j.getAsJsonObject("model");
  }

  @Test
  void notJson() throws Exception {
    rejects("{\"model\": ", "not valid JSON");
    rejects("[1, 2]", "JSON object");
    rejects("", "JSON object");
    rejects("{}", "model is missing");
    rejects("[".repeat(100_000), "not valid JSON");
    rejects("{\"model\": {\"type\": \"BPE\"} trailing", "not valid JSON");
  }

  @Test
  void unsupportedModels() throws Exception {
    rejects("{\"model\": {\"type\": \"WordPiece\", \"vocab\": {}}}", "model.type", "WordPiece");
    rejects("{\"model\": {\"type\": \"Unigram\", \"vocab\": []}}", "Unigram");
    rejects("{\"model\": {\"vocab\": {}}}", "model.type is missing");
    rejectsEdited(j -> model(j).addProperty("dropout", 0.1), "dropout");
    rejectsEdited(j -> model(j).addProperty("continuing_subword_prefix", "##"), "continuing_subword_prefix");
  }

  @Test
  void unsupportedComponents() throws Exception {
    rejectsEdited(j -> j.add("normalizer", JsonParser.parseString("{\"type\": \"BertNormalizer\"}")),
        "normalizer", "BertNormalizer");
    rejectsEdited(j -> j.getAsJsonObject("normalizer").getAsJsonArray("normalizers")
        .add(JsonParser.parseString("{\"type\": \"Precompiled\", \"precompiled_charsmap\": \"\"}")),
        "normalizer.normalizers[2]", "Precompiled");
    rejectsEdited(j -> j.add("pre_tokenizer", JsonParser.parseString("{\"type\": \"Whitespace\"}")),
        "pre_tokenizer", "Whitespace");
    rejectsEdited(j -> j.add("decoder", JsonParser.parseString("{\"type\": \"WordPiece\", \"prefix\": \"##\"}")),
        "decoder", "WordPiece");
    rejectsEdited(j -> j.add("decoder", null), "decoder is missing or null");
    rejectsEdited(j -> j.add("decoder", JsonParser.parseString("{\"type\": \"Sequence\", \"decoders\": ["
        + "{\"type\": \"Strip\", \"content\": \" \", \"start\": 1, \"stop\": 0}]}")), "decoder.decoders[0]", "Strip");
    rejectsEdited(j -> j.add("pre_tokenizer", JsonParser.parseString("{\"type\": \"Split\", \"pattern\": "
        + "{\"String\": \"x\"}, \"behavior\": \"Sideways\", \"invert\": false}")), "behavior", "Sideways");
  }

  @Test
  void byteLevelMustBeConsistent() throws Exception {
    rejectsEdited(j -> j.add("decoder", JsonParser.parseString("{\"type\": \"ByteLevel\"}")),
        "decoder is ByteLevel but the pre_tokenizer is not");
    rejectsEdited(j -> j.add("pre_tokenizer", JsonParser.parseString("{\"type\": \"ByteLevel\"}")),
        "pre_tokenizer is ByteLevel but the decoder is not");
    rejectsEdited(j -> {
      j.add("pre_tokenizer", JsonParser.parseString("{\"type\": \"Sequence\", \"pretokenizers\": ["
          + "{\"type\": \"ByteLevel\"}, {\"type\": \"Digits\"}]}"));
      j.add("decoder", JsonParser.parseString("{\"type\": \"ByteLevel\"}"));
    }, "pre_tokenizer.pretokenizers[1]", "must come last");
  }

  @Test
  void badPatterns() throws Exception {
    rejectsEdited(j -> j.add("pre_tokenizer", JsonParser.parseString("{\"type\": \"Split\", \"pattern\": "
        + "{\"Regex\": \"a\\\\Kb\"}, \"behavior\": \"Isolated\", \"invert\": false}")),
        "pre_tokenizer Split pattern \"a\\Kb\"", "java.util.regex");
    rejectsEdited(j -> j.add("pre_tokenizer", JsonParser.parseString("{\"type\": \"Split\", \"pattern\": "
        + "{\"Regex\": \"[[:alpha:]]+\"}, \"behavior\": \"Isolated\", \"invert\": false}")), "[[:alpha:]]+", "POSIX");
    rejectsEdited(j -> j.add("pre_tokenizer", JsonParser.parseString("{\"type\": \"Split\", \"pattern\": "
        + "{\"Regex\": \"(unclosed\"}, \"behavior\": \"Isolated\", \"invert\": false}")), "(unclosed");
    rejectsEdited(j -> j.add("pre_tokenizer", JsonParser.parseString("{\"type\": \"Split\", \"pattern\": "
        + "{\"Glob\": \"*\"}, \"behavior\": \"Isolated\", \"invert\": false}")), "\"String\" or \"Regex\"");
  }

  @Test
  void badVocabAndMerges() throws Exception {
    rejectsEdited(j -> model(j).getAsJsonArray("merges").add("▁ zz"), "merge #11", "\"zz\"", "not in the vocabulary");
    rejectsEdited(j -> model(j).getAsJsonArray("merges").add("h e"), "merge #11", "\"he\"", "not in the vocabulary");
    rejectsEdited(j -> model(j).getAsJsonArray("merges").add("a b c"), "model.merges[11]", "two tokens");
    rejectsEdited(j -> model(j).getAsJsonArray("merges").add(new JsonArray()), "model.merges[11]");
    rejectsEdited(j -> model(j).getAsJsonArray("merges").add(7), "model.merges[11]");
    rejectsEdited(j -> model(j).add("merges", JsonParser.parseString("{}")), "model.merges must be an array");
    rejectsEdited(j -> model(j).getAsJsonObject("vocab").addProperty("dup", 5), "id 5", "\"dup\"");
    rejectsEdited(j -> model(j).getAsJsonObject("vocab").addProperty("neg", -1), "model.vocab[\"neg\"]");
    rejectsEdited(j -> model(j).getAsJsonObject("vocab").addProperty("frac", 1.5), "model.vocab[\"frac\"]");
    rejectsEdited(j -> model(j).getAsJsonObject("vocab").addProperty("str", "x"), "model.vocab[\"str\"]", "number");
    rejectsEdited(j -> model(j).add("vocab", new JsonObject()), "model.vocab is empty");
    rejectsEdited(j -> model(j).addProperty("unk_token", "<nope>"), "unk_token", "<nope>");
    rejectsEdited(j -> model(j).addProperty("byte_fallback", "yes"), "model.byte_fallback", "true or false");
  }

  @Test
  void badAddedTokens() throws Exception {
    rejectsEdited(j -> j.add("added_tokens", JsonParser.parseString("[{\"content\": \"x\"}]")),
        "added_tokens[0].id is missing");
    rejectsEdited(j -> j.add("added_tokens", JsonParser.parseString("[{\"id\": -4, \"content\": \"x\"}]")),
        "added_tokens[0].id");
    rejectsEdited(j -> j.add("added_tokens", JsonParser.parseString("[{\"id\": 4, \"content\": \"\"}]")),
        "added_tokens[0].content");
    rejectsEdited(j -> j.add("added_tokens", JsonParser.parseString("{}")), "added_tokens must be an array");
    rejectsEdited(j -> j.add("added_tokens", JsonParser.parseString("[{\"id\": 99999999, \"content\": \"x\"}]")),
        "added_tokens[0].id");
  }

  @Test
  void missingFileIsAnIoError() {
    assertThrows(NoSuchFileException.class, () -> HfTokenizer.load(dir.resolve("absent.json")));
  }

  @Test
  void unencodableCharacterNamesTheFile() throws Exception {
    JsonObject j = HfSentencePieceTest.json(false, false, true);
    model(j).add("unk_token", null);
    Path p = write(j.toString());
    HfTokenizer t = HfTokenizer.load(p);
    IllegalArgumentException e = assertThrows(IllegalArgumentException.class, () -> t.encode("hi"));
    assertTrue(e.getMessage().contains("U+0069") && e.getMessage().contains(p.toString()), e.getMessage());
  }

  @Test
  void badIds() throws Exception {
    JsonObject j = HfSentencePieceTest.json(false, true, true);
    model(j).getAsJsonObject("vocab").addProperty("gap", 400); // ids 278..399 are unused
    Path p = write(j.toString());
    HfTokenizer t = HfTokenizer.load(p);
    for (int bad : new int[] {-1, 401, 300}) {
      IllegalArgumentException e = assertThrows(IllegalArgumentException.class, () -> t.tokenBytes(bad));
      assertTrue(e.getMessage().contains(Integer.toString(bad)) && e.getMessage().contains(p.toString()), e.getMessage());
      assertThrows(IllegalArgumentException.class, () -> t.decode(new int[] {259, bad}));
    }
    IllegalArgumentException e = assertThrows(IllegalArgumentException.class, () -> t.tokenBytes(401));
    assertTrue(e.getMessage().contains("401"), e.getMessage());
    assertThrows(IllegalArgumentException.class, () -> HfTokenizer.load(p, 300, -1));
  }
}
