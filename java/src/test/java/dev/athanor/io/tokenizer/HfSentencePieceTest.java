package dev.athanor.io.tokenizer;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertNotEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;
import static org.junit.jupiter.api.Assumptions.assumeTrue;

import com.google.gson.JsonArray;
import com.google.gson.JsonObject;
import com.google.gson.JsonParser;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.OptionalInt;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/** A small hand-written SentencePiece-style (Llama 2 layout) tokenizer.json with byte fallback. */
class HfSentencePieceTest {
  @TempDir Path dir;

  @BeforeAll
  static void library() {
    assumeTrue(HfTokenizer.isAvailable(), HfTokenizer.unavailableReason());
  }

  // ids: <unk> 0, <s> 1, </s> 2, <0x00>..<0xFF> 3..258, then these
  static final String[] PIECES = {"▁", "h", "e", "l", "o", "w", "r", "d", "el", "▁h", "lo", "ello", "▁hello", "▁w",
      "or", "▁wor", "ld", "▁world", "ll"};
  static final String[][] MERGES = {{"e", "l"}, {"▁", "h"}, {"l", "o"}, {"el", "lo"}, {"▁h", "ello"}, {"▁", "w"},
      {"o", "r"}, {"▁w", "or"}, {"l", "d"}, {"▁wor", "ld"}, {"l", "l"}};
  static final int SPACE = 259, HELLO = 271, WORLD = 276, LL = 277, L = 262, LO = 269, H_ = 268, O = 263;

  static int byteId(int b) {
    return 3 + b;
  }

  /** The tokenizer.json: Llama 2's layout (normalizer Prepend + Replace, no pre-tokenizer, decoder Sequence). */
  static JsonObject json(boolean pairMerges, boolean byteFallback, boolean fuseUnk) {
    JsonObject vocab = new JsonObject();
    vocab.addProperty("<unk>", 0);
    vocab.addProperty("<s>", 1);
    vocab.addProperty("</s>", 2);
    for (int b = 0; b < 256; b++) vocab.addProperty(String.format("<0x%02X>", b), byteId(b));
    for (int i = 0; i < PIECES.length; i++) vocab.addProperty(PIECES[i], 259 + i);
    JsonArray merges = new JsonArray();
    for (String[] m : MERGES) {
      if (pairMerges) {
        JsonArray p = new JsonArray();
        p.add(m[0]);
        p.add(m[1]);
        merges.add(p);
      } else {
        merges.add(m[0] + " " + m[1]);
      }
    }
    String text = """
        {
          "version": "1.0",
          "added_tokens": [
            {"id": 0, "content": "<unk>", "single_word": false, "lstrip": false, "rstrip": false, "normalized": false, "special": true},
            {"id": 1, "content": "<s>", "single_word": false, "lstrip": false, "rstrip": false, "normalized": false, "special": true},
            {"id": 2, "content": "</s>", "single_word": false, "lstrip": false, "rstrip": false, "normalized": false, "special": true}
          ],
          "normalizer": {"type": "Sequence", "normalizers": [
            {"type": "Prepend", "prepend": "▁"},
            {"type": "Replace", "pattern": {"String": " "}, "content": "▁"}]},
          "pre_tokenizer": null,
          "post_processor": {"type": "TemplateProcessing", "single": [{"SpecialToken": {"id": "<s>", "type_id": 0}},
            {"Sequence": {"id": "A", "type_id": 0}}], "pair": [], "special_tokens": {}},
          "decoder": {"type": "Sequence", "decoders": [
            {"type": "Replace", "pattern": {"String": "▁"}, "content": " "},
            {"type": "ByteFallback"},
            {"type": "Fuse"},
            {"type": "Strip", "content": " ", "start": 1, "stop": 0}]},
          "model": {"type": "BPE", "dropout": null, "unk_token": "<unk>", "continuing_subword_prefix": null,
            "end_of_word_suffix": null, "fuse_unk": true, "byte_fallback": true, "ignore_merges": false}
        }
        """;
    JsonObject root = JsonParser.parseString(text).getAsJsonObject();
    JsonObject model = root.getAsJsonObject("model");
    model.add("vocab", vocab);
    model.add("merges", merges);
    model.addProperty("byte_fallback", byteFallback);
    model.addProperty("fuse_unk", fuseUnk);
    return root;
  }

  private HfTokenizer load(JsonObject json, String name) throws Exception {
    Path p = dir.resolve(name);
    Files.writeString(p, json.toString());
    return HfTokenizer.load(p);
  }

  private HfTokenizer standard() throws Exception {
    return load(json(false, true, true), "tokenizer.json");
  }

  @Test
  void exactIds() throws Exception {
    HfTokenizer t = standard();
    assertEquals(SPACE + PIECES.length, t.vocabSize());
    assertArrayEquals(new int[] {HELLO, WORLD}, t.encode("hello world"));
    assertArrayEquals(new int[] {HELLO}, t.encode("hello"));
    // two spaces: the second "▁" stays alone, the third merges into "▁world"
    assertArrayEquals(new int[] {HELLO, SPACE, WORLD}, t.encode("hello  world"));
    // leading space: "▁▁hello"
    assertArrayEquals(new int[] {SPACE, HELLO}, t.encode(" hello"));
    assertArrayEquals(new int[0], t.encode(""));
  }

  @Test
  void lowestRankFirstThenLeftmost() throws Exception {
    HfTokenizer t = standard();
    // "▁lll": (l,l) is possible at two places with the same rank: the leftmost wins
    assertArrayEquals(new int[] {SPACE, LL, L}, t.encode("lll"));
    // "▁llo": (l,o) has a lower rank than (l,l) although (l,l) is further left
    assertArrayEquals(new int[] {SPACE, L, LO}, t.encode("llo"));
  }

  @Test
  void unknownCharactersFallBackToBytes() throws Exception {
    HfTokenizer t = standard();
    assertArrayEquals(new int[] {H_, byteId('i')}, t.encode("hi"));
    assertArrayEquals(new int[] {SPACE, byteId(0xC3), byteId(0xA9)}, t.encode("é"));
    assertArrayEquals(new int[] {SPACE, byteId(0xF0), byteId(0x9F), byteId(0x98), byteId(0x80)}, t.encode("😀"));
    assertArrayEquals(new int[] {SPACE, byteId('\n')}, t.encode("\n"));
    assertEquals("hi", t.decode(new int[] {H_, byteId('i')}));
    assertEquals("é", t.decode(new int[] {SPACE, byteId(0xC3), byteId(0xA9)}));
    assertEquals("\uFFFD", t.decode(new int[] {byteId(0xC3)}));
    // added tokens in the text are recognised, special ones too, as in Python (the old hand-written tokenizer
    // encoded special-token text as plain text)
    assertArrayEquals(new int[] {1}, t.encode("<s>"));
    assertArrayEquals(new int[] {H_, byteId('i'), 2, SPACE, WORLD}, t.encode("hi</s> world"));
  }

  @Test
  void unknownTokenWithoutByteFallback() throws Exception {
    HfTokenizer fused = load(json(false, false, true), "fused.json");
    assertArrayEquals(new int[] {H_, 0}, fused.encode("hiii"));
    assertArrayEquals(new int[] {H_, 0, O, 0}, fused.encode("hiioxx"));
    HfTokenizer unfused = load(json(false, false, false), "unfused.json");
    assertArrayEquals(new int[] {H_, 0, 0, 0}, unfused.encode("hiii"));
    assertEquals("h<unk><unk><unk>", unfused.decode(unfused.encode("hiii")));
  }

  @Test
  void decodeRoundTrips() throws Exception {
    HfTokenizer t = standard();
    List<String> texts = new ArrayList<>(SampleTexts.awkward());
    texts.addAll(SampleTexts.randomStrings(5, 300, 150, '▁'));
    for (String s : texts) {
      int[] ids = t.encode(s);
      assertEquals(s, t.decode(ids), () -> Gpt2TokenizerTest.escape(s));
      StreamDecoder d = t.streamDecoder();
      StringBuilder out = new StringBuilder();
      for (int id : ids) {
        String piece = d.push(id);
        assertTrue(!piece.contains("\uFFFD"), "no partial characters");
        out.append(piece);
      }
      out.append(d.flush());
      assertEquals(s, out.toString(), () -> "streamed " + Gpt2TokenizerTest.escape(s));
    }
  }

  @Test
  void specialTokensAndGuessedIds() throws Exception {
    HfTokenizer t = standard();
    assertEquals(OptionalInt.of(1), t.bosToken());
    assertEquals(OptionalInt.of(2), t.eosToken());
    assertEquals("<s> hello", t.decode(new int[] {1, HELLO}));
    assertEquals("hello</s>", t.decode(new int[] {HELLO, 2}));
    assertEquals(OptionalInt.of(HELLO), t.tokenId("▁hello"));
    Path p = dir.resolve("explicit.json");
    Files.writeString(p, json(false, true, true).toString());
    HfTokenizer explicit = HfTokenizer.load(p, -1, 2);
    assertEquals(OptionalInt.empty(), explicit.bosToken());
    assertEquals(OptionalInt.of(2), explicit.eosToken());
    IllegalArgumentException e = assertThrows(IllegalArgumentException.class, () -> HfTokenizer.load(p, 1, 5000));
    assertTrue(e.getMessage().contains("5000") && e.getMessage().contains(p.toString()), e.getMessage());
    assertThrows(IllegalArgumentException.class, () -> HfTokenizer.load(p, -3, 2));
  }

  @Test
  void mergesInBothFormatsAgree() throws Exception {
    HfTokenizer strings = load(json(false, true, true), "strings.json");
    HfTokenizer pairs = load(json(true, true, true), "pairs.json");
    assertNotEquals(strings.id(), pairs.id(), "the id hashes the file's content");
    assertTrue(strings.id().matches("hf-[0-9.]+-[0-9.]+-[0-9a-f]{12}"), strings.id());
    for (String s : SampleTexts.randomStrings(11, 100, 60, '▁')) {
      assertArrayEquals(strings.encode(s), pairs.encode(s));
    }
    assertArrayEquals(new int[] {HELLO, WORLD}, pairs.encode("hello world"));
    // the pair format allows tokens that contain spaces
    JsonObject j = json(true, true, true);
    JsonObject vocab = j.getAsJsonObject("model").getAsJsonObject("vocab");
    vocab.addProperty("a b", 300);
    vocab.addProperty("a", 301);
    vocab.addProperty(" b", 302);
    JsonArray pair = new JsonArray();
    pair.add("a");
    pair.add(" b");
    j.getAsJsonObject("model").getAsJsonArray("merges").add(pair);
    HfTokenizer spaced = load(j, "spaced.json");
    assertEquals(303, spaced.vocabSize());
    assertEquals(OptionalInt.of(300), spaced.tokenId("a b"));
  }

  @Test
  void metaspacePreTokenizerVariant() throws Exception {
    // the newer layout: no normalizer, a Metaspace pre-tokenizer (prepend "first", split or not)
    for (boolean split : new boolean[] {false, true}) {
      JsonObject j = json(false, true, true);
      j.add("normalizer", null);
      j.add("pre_tokenizer", JsonParser.parseString("{\"type\": \"Metaspace\", \"replacement\": \"▁\", "
          + "\"prepend_scheme\": \"first\", \"split\": " + split + "}"));
      HfTokenizer t = load(j, "metaspace" + split + ".json");
      assertArrayEquals(new int[] {HELLO, WORLD}, t.encode("hello world"));
      assertArrayEquals(new int[] {HELLO, SPACE, WORLD}, t.encode("hello  world"));
      assertArrayEquals(new int[] {H_, byteId('i')}, t.encode("hi"));
      // text that starts with a space gets no extra "▁" from Metaspace (unlike the Prepend normalizer)
      assertArrayEquals(new int[] {HELLO}, t.encode(" hello"));
      assertEquals("hello world", t.decode(t.encode("hello world")));
    }
  }
}
