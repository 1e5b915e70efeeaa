package dev.athanor.io.tokenizer;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;
import static org.junit.jupiter.api.Assumptions.assumeTrue;

import com.google.gson.JsonObject;
import com.google.gson.JsonParser;
import java.nio.ByteBuffer;
import java.nio.charset.CharacterCodingException;
import java.nio.charset.CodingErrorAction;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.OptionalInt;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * Byte-level HF tokenizers against JTokkit: a tokenizer.json rebuilt from r50k_base's rank table (see {@link
 * R50kTokenizerJson}) must give GPT-2's ids through Hugging Face's library.
 */
class HfByteLevelTest {
  @TempDir static Path dir;
  static Gpt2Tokenizer gpt2;
  static byte[][] tokens;
  static List<String[]> merges;
  static R50kTokenizerJson.Built built;
  static HfTokenizer hf; // "a b" merges, ignore_merges true (as tiktoken/JTokkit look whole pieces up first)
  static HfTokenizer hfPairs; // [a, b] merges, ignore_merges false (pure BPE)

  @BeforeAll
  static void build() throws Exception {
    assumeTrue(HfTokenizer.isAvailable(), HfTokenizer.unavailableReason());
    gpt2 = Gpt2Tokenizer.instance();
    tokens = R50kTokenizerJson.tokenBytes();
    int[] unreachable = new int[1];
    merges = R50kTokenizerJson.reconstructMerges(tokens, unreachable);
    built = R50kTokenizerJson.build(tokens, merges, unreachable[0], false, true, true);
    hf = load("r50k-strings.json", built);
    hfPairs = load("r50k-pairs.json", R50kTokenizerJson.build(tokens, merges, unreachable[0], true, false, true));
  }

  private static HfTokenizer load(String name, R50kTokenizerJson.Built b) throws Exception {
    Path p = dir.resolve(name);
    Files.writeString(p, b.json());
    return HfTokenizer.load(p);
  }

  @AfterAll
  static void close() {
    if (hf != null) hf.close();
    if (hfPairs != null) hfPairs.close();
  }

  @Test
  void alphabetIsGpt2s() {
    assertEquals('Ġ', R50kTokenizerJson.alphabet(' '));
    assertEquals('Ċ', R50kTokenizerJson.alphabet('\n'));
    assertEquals('Ā', R50kTokenizerJson.alphabet(0));
    assertEquals('ł', R50kTokenizerJson.alphabet(0xa0));
    assertEquals('Ń', R50kTokenizerJson.alphabet(0xad));
    assertEquals('a', R50kTokenizerJson.alphabet('a'));
    assertEquals('ÿ', R50kTokenizerJson.alphabet(0xff));
    // r50k's ids 0..93 are the printable ASCII bytes in order, as in GPT-2's encoder.json
    assertArrayEquals(new byte[] {'!'}, gpt2.tokenBytes(0));
    assertEquals(OptionalInt.of(0), hf.tokenId("!"));
    assertEquals(OptionalInt.of(18435), hf.tokenId("ĠHello"));
    assertEquals(" Hello", hf.decode(new int[] {18435}));
  }

  @Test
  void reconstructionGivesGpt2sMergeCount() {
    // GPT-2's merges.txt has 50,000 merges: every token but the 256 bytes and <|endoftext|> is reachable by one
    assertEquals(50_000, built.merges().size());
    assertEquals(0, built.unreachable());
    assertEquals(50257, hf.vocabSize());
  }

  @Test
  void everyTokenIsRebuiltFromItsBytes() throws Exception {
    // pure BPE (no whole-piece lookup, no pre-tokenizer split) on each token's own bytes must make exactly that token
    try (HfTokenizer whole = load("r50k-whole.json", R50kTokenizerJson.build(tokens, merges, 0, true, false, false))) {
      int checked = 0;
      for (int id = 0; id < 50256; id++) {
        String text;
        try {
          text = StandardCharsets.UTF_8.newDecoder().onMalformedInput(CodingErrorAction.REPORT)
              .decode(ByteBuffer.wrap(gpt2.tokenBytes(id))).toString();
        } catch (CharacterCodingException e) {
          continue; // part of a character: not a text of its own
        }
        int tid = id;
        assertArrayEquals(new int[] {id}, whole.encode(text), () -> "token " + tid + " " + Gpt2TokenizerTest.escape(text));
        checked++;
      }
      assertTrue(checked > 49_000, checked + " tokens checked");
    }
  }

  @Test
  void sameIdsAsJtokkitOnJdkSources() throws Exception {
    Path src = SampleTexts.jdkSources();
    assumeTrue(src != null, "the JDK has no lib/src.zip");
    int files = 0;
    for (String s : SampleTexts.jdkSourceFiles(src, "java.base/java/util/concurrent/", 600_000)) {
      int[] expected = gpt2.encode(s);
      assertArrayEquals(expected, hf.encode(s));
      assertArrayEquals(expected, hfPairs.encode(s));
      assertEquals(s, hf.decode(expected));
      files++;
    }
    assertTrue(files > 5);
  }

  @Test
  void sameIdsAsJtokkitOnUnicode() {
    List<String> texts = new ArrayList<>(SampleTexts.awkward());
    texts.addAll(SampleTexts.randomStrings(1234, 500, 200, -1));
    for (String s : texts) {
      if (s.contains("<|endoftext|>")) continue; // see specialTokenTextIsTheSpecialToken
      int[] expected = gpt2.encode(s);
      assertArrayEquals(expected, hf.encode(s), () -> Gpt2TokenizerTest.escape(s));
      assertArrayEquals(expected, hfPairs.encode(s), () -> Gpt2TokenizerTest.escape(s));
      assertEquals(s, hf.decode(expected));
    }
  }

  @Test
  void specialTokenTextIsTheSpecialToken() {
    assertEquals(OptionalInt.of(50256), hf.eosToken());
    assertEquals(OptionalInt.of(50256), hf.bosToken());
    // Hugging Face matches added tokens in the text (as Python's GPT-2 tokenizer does); JTokkit's encodeOrdinary
    // (tiktoken's encode_ordinary) does not
    int x = gpt2.encode("x")[0], y = gpt2.encode("y")[0];
    assertArrayEquals(new int[] {x, 50256, y}, hf.encode("x<|endoftext|>y"));
    assertTrue(gpt2.encode("x<|endoftext|>y").length > 3, Arrays.toString(gpt2.encode("x<|endoftext|>y")));
    assertEquals("<|endoftext|>", hf.decode(new int[] {50256}));
  }

  /** The Llama 3 split pattern, as its tokenizer.json writes it. */
  static final String LLAMA3_PATTERN = "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| ?"
      + "[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";

  @Test
  void llama3StyleSequenceOfSplitAndByteLevel() throws Exception {
    JsonObject j = JsonParser.parseString(built.json()).getAsJsonObject();
    JsonObject split = new JsonObject();
    split.addProperty("type", "Split");
    JsonObject pattern = new JsonObject();
    pattern.addProperty("Regex", LLAMA3_PATTERN);
    split.add("pattern", pattern);
    split.addProperty("behavior", "Isolated");
    split.addProperty("invert", false);
    JsonObject bl = new JsonObject();
    bl.addProperty("type", "ByteLevel");
    bl.addProperty("add_prefix_space", false);
    bl.addProperty("trim_offsets", true);
    bl.addProperty("use_regex", false);
    JsonObject seq = new JsonObject();
    seq.addProperty("type", "Sequence");
    com.google.gson.JsonArray steps = new com.google.gson.JsonArray();
    steps.add(split);
    steps.add(bl);
    seq.add("pretokenizers", steps);
    j.add("pre_tokenizer", seq);
    j.add("normalizer", JsonParser.parseString("{\"type\": \"NFC\"}"));
    Path p = dir.resolve("llama3-style.json");
    Files.writeString(p, j.toString());
    try (HfTokenizer t = HfTokenizer.load(p)) {
      // digits go in groups of three, each piece through the same BPE as GPT-2's
      List<Integer> expected = new ArrayList<>();
      for (String piece : List.of("Year", " ", "202", "4", ":", " ", "123", "45")) {
        for (int id : gpt2.encode(piece)) expected.add(id);
      }
      assertArrayEquals(expected.stream().mapToInt(Integer::intValue).toArray(), t.encode("Year 2024: 12345"));
      // NFC: a decomposed é encodes like the composed one
      assertArrayEquals(t.encode("caf\u00e9"), t.encode("cafe\u0301"));
      for (String s : SampleTexts.randomStrings(77, 100, 100, -1)) {
        String nfc = java.text.Normalizer.normalize(s, java.text.Normalizer.Form.NFC);
        assertEquals(nfc, t.decode(t.encode(s)));
      }
    }
  }
}
