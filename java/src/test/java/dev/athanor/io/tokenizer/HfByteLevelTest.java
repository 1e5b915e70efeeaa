package dev.athanor.io.tokenizer;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;
import static org.junit.jupiter.api.Assumptions.assumeTrue;

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

/**
 * Byte-level HF tokenizers against JTokkit: a tokenizer.json rebuilt from r50k_base's rank table (see {@link
 * R50kTokenizerJson}) must give GPT-2's ids.
 */
class HfByteLevelTest {
  @TempDir static Path dir;
  static Gpt2Tokenizer gpt2;
  static R50kTokenizerJson.Built built;
  static HfTokenizer hf; // "a b" merges, ignore_merges true (as tiktoken/JTokkit look whole pieces up first)
  static HfTokenizer hfPairs; // [a, b] merges, ignore_merges false (pure BPE)

  @BeforeAll
  static void build() throws Exception {
    gpt2 = Gpt2Tokenizer.instance();
    byte[][] tokens = R50kTokenizerJson.tokenBytes();
    int[] unreachable = new int[1];
    List<String[]> merges = R50kTokenizerJson.reconstructMerges(tokens, unreachable);
    built = R50kTokenizerJson.build(tokens, merges, unreachable[0], false, true);
    Path p = dir.resolve("r50k-strings.json");
    Files.writeString(p, built.json());
    hf = HfTokenizer.load(p);
    R50kTokenizerJson.Built pairs = R50kTokenizerJson.build(tokens, merges, unreachable[0], true, false);
    Path q = dir.resolve("r50k-pairs.json");
    Files.writeString(q, pairs.json());
    hfPairs = HfTokenizer.load(q);
  }

  @Test
  void alphabetIsGpt2s() {
    assertEquals('Ġ', ByteLevelAlphabet.toChar(' '));
    assertEquals('Ċ', ByteLevelAlphabet.toChar('\n'));
    assertEquals('Ā', ByteLevelAlphabet.toChar(0));
    assertEquals('ł', ByteLevelAlphabet.toChar(0xa0));
    assertEquals('Ń', ByteLevelAlphabet.toChar(0xad));
    assertEquals('a', ByteLevelAlphabet.toChar('a'));
    assertEquals('ÿ', ByteLevelAlphabet.toChar(0xff));
    for (int b = 0; b < 256; b++) assertEquals(b, ByteLevelAlphabet.toByte(ByteLevelAlphabet.toChar(b)));
    assertEquals(-1, ByteLevelAlphabet.toByte('€'));
    // r50k's ids 0..93 are the printable ASCII bytes in order, as in GPT-2's encoder.json
    assertArrayEquals(new byte[] {'!'}, gpt2.tokenBytes(0));
    assertEquals(OptionalInt.of(0), hf.tokenId("!"));
    assertEquals("ĠHello", hf.tokenString(18435));
    assertArrayEquals(gpt2.tokenBytes(18435), hf.tokenBytes(18435));
  }

  @Test
  void reconstructionGivesGpt2sMergeCount() {
    // GPT-2's merges.txt has 50,000 merges: every token but the 256 bytes and <|endoftext|> is reachable by one
    assertEquals(50_000, built.merges().size());
    assertEquals(0, built.unreachable());
    assertEquals(50_000, hf.model().mergeCount());
    assertEquals(50257, hf.vocabSize());
  }

  @Test
  void everyTokenIsRebuiltFromItsBytes() {
    // pure BPE (no whole-piece lookup) on each token's own bytes must make exactly that token
    for (int id = 0; id < 50256; id++) {
      IntList out = new IntList(4);
      hfPairs.model().encodeBytes(gpt2.tokenBytes(id), out);
      assertArrayEquals(new int[] {id}, out.toArray(), "token " + id + " \"" + hf.tokenString(id) + "\"");
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
      int[] expected = gpt2.encode(s);
      assertArrayEquals(expected, hf.encode(s), () -> Gpt2TokenizerTest.escape(s));
      assertArrayEquals(expected, hfPairs.encode(s), () -> Gpt2TokenizerTest.escape(s));
      assertEquals(s, hf.decode(expected));
    }
  }

  @Test
  void specialTokenIsAddedTokenButEncodedAsText() {
    assertEquals(OptionalInt.of(50256), hf.eosToken());
    assertEquals(OptionalInt.of(50256), hf.bosToken());
    assertArrayEquals(gpt2.encode("x<|endoftext|>y"), hf.encode("x<|endoftext|>y"));
    assertEquals("<|endoftext|>", hf.decode(new int[] {50256}));
    assertEquals(0, hf.leadingSpacesStripped());
  }

  /** The Llama 3 split pattern, as its tokenizer.json writes it. */
  static final String LLAMA3_PATTERN = "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| ?"
      + "[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";

  @Test
  void llama3SplitPattern() {
    var p = HfPreTokenizer.compileOniguruma(LLAMA3_PATTERN, "test");
    List<String> pieces = new ArrayList<>();
    HfPreTokenizer.splitOn("Hello WORLD'S 12345\n\n  x", p, HfPreTokenizer.Behavior.ISOLATED, false, pieces);
    assertEquals(List.of("Hello", " WORLD", "'S", " ", "123", "45", "\n\n", " ", " x"), pieces);
    pieces.clear();
    HfPreTokenizer.splitOn("a\u3000\u3000b,.;\r\n(x)", p, HfPreTokenizer.Behavior.ISOLATED, false, pieces);
    assertEquals(List.of("a", "\u3000", "\u3000b", ",.;\r\n", "(x", ")"), pieces);
  }

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
    HfTokenizer t = HfTokenizer.load(p);
    // digits go in groups of three, each piece through the same BPE as GPT-2's
    IntList expected = new IntList(8);
    for (String piece : List.of("Year", " ", "202", "4", ":", " ", "123", "45")) hf.model().encode(piece, expected);
    assertArrayEquals(expected.toArray(), t.encode("Year 2024: 12345"));
    // NFC: a decomposed é encodes like the composed one
    assertArrayEquals(t.encode("caf\u00e9"), t.encode("cafe\u0301"));
    for (String s : SampleTexts.randomStrings(77, 100, 100, -1)) {
      String nfc = java.text.Normalizer.normalize(s, java.text.Normalizer.Form.NFC);
      assertEquals(nfc, t.decode(t.encode(s)));
    }
  }
}
