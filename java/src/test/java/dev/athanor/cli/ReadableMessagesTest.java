package dev.athanor.cli;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;
import static org.junit.jupiter.api.Assumptions.assumeTrue;

import com.google.gson.JsonParseException;
import com.google.gson.JsonParser;
import dev.athanor.io.JsonErrors;
import dev.athanor.io.hf.HfModelDir;
import dev.athanor.io.safetensors.SafetensorsSet;
import dev.athanor.io.tokenizer.HfTokenizer;
import dev.athanor.nn.ModelConfig;
import dev.athanor.nn.Transformer;
import dev.athanor.runtime.Device;
import dev.athanor.runtime.NativeException;
import dev.athanor.runtime.NativeRuntime;
import dev.athanor.tensor.DType;
import java.io.IOException;
import java.io.UncheckedIOException;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.charset.MalformedInputException;
import java.nio.charset.StandardCharsets;
import java.nio.file.FileAlreadyExistsException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.regex.Pattern;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * Issue 14, case 7 (messages): Java exception class names ({@code MalformedInputException},
 * {@code FileAlreadyExistsException}), Gson's {@code MalformedJsonException} with its troubleshooting link, and native
 * status codes ({@code ATH_ERR_INVALID: ath_cpu_set_threads}) showed through. Each example below ends in a message that
 * says what was wrong, with which file or value, and none of those.
 */
class ReadableMessagesTest {
  /** What a message for people never holds. */
  private static final Pattern LEAK = Pattern.compile("[A-Za-z]+(Exception|Error)\\b|https?://|ATH_ERR");

  @TempDir static Path tmp;
  static Path good;
  static final ModelConfig CFG = ModelConfig.gpt2(50257, 16, 1, 16, 1);
  static final byte[] NOT_UTF8 = {'{', '"', 'a', '"', ':', ' ', '"', (byte) 0xff, (byte) 0xfe, '"', '}'};

  @BeforeAll
  static void saveAModel() {
    good = TestModels.save(tmp.resolve("good"), CFG, 1);
  }

  /** A copy of the good model with {@code name} holding {@code content}. */
  private static Path modelWith(String dirName, String name, byte[] content) throws IOException {
    Path d = Files.createDirectory(tmp.resolve(dirName));
    Files.copy(good.resolve("config.json"), d.resolve("config.json"));
    Files.copy(good.resolve("model.safetensors"), d.resolve("model.safetensors"));
    Files.write(d.resolve(name), content);
    return d;
  }

  /** Runs {@code score} on {@code dir}: exit code 1, one line naming {@code file} and {@code problem}, no leaks. */
  private static void scoreFails(Path dir, String file, String problem) {
    CliTest.Out r = CliTest.run("score", "--model", dir.toString(), "--text", "the furnace", "--device", "cpu");
    assertTrue(r.code() == 1 || r.code() == 2, r.err());
    String err = r.err().strip();
    assertTrue(err.startsWith("athanor score: " + dir.resolve(file)), err);
    assertTrue(err.contains(problem), err);
    assertFalse(LEAK.matcher(err).find(), "leaks a class name, link or status: " + err);
    assertEquals(1, err.lines().count(), err);
  }

  @Test
  void case7NonUtf8FilesSayNotValidUtf8() throws IOException {
    scoreFails(modelWith("bad-utf8-config", "config.json", NOT_UTF8), "config.json", "not valid UTF-8");
    Path d = modelWith("bad-utf8-index", SafetensorsSet.INDEX, NOT_UTF8);
    Files.delete(d.resolve("model.safetensors"));
    scoreFails(d, SafetensorsSet.INDEX, "not valid UTF-8");
    // checked before the tokenizers library is needed: the same message with or without it
    scoreFails(modelWith("bad-utf8-tokenizer", "tokenizer.json", NOT_UTF8), "tokenizer.json", ": not valid UTF-8 text");
    Path tokens = tmp.resolve("tokens.txt");
    Files.write(tokens, NOT_UTF8);
    CliTest.Out r = CliTest.run("score", "--model", good.toString(), "--tokens", tokens.toString(), "--device", "cpu");
    assertEquals(2, r.code(), r.err());
    assertEquals("athanor score: token file " + tokens + " is not UTF-8 text (nor a .bin token shard)\n", r.err());
    // what the JDK says becomes what it means
    assertEquals("cannot read x: not valid UTF-8 text",
        Messages.of(new UncheckedIOException("cannot read x: " + new MalformedInputException(1), new MalformedInputException(1))));
  }

  @Test
  void case7MalformedJsonHasNoClassNameAndNoLink() throws IOException {
    byte[] cut = "{\"model_type\": \"gpt2\", \"n_embd\": [1, 2".getBytes(StandardCharsets.UTF_8);
    scoreFails(modelWith("cut-config", "config.json", cut), "config.json", "malformed JSON: End of input at line 1 column");
    Path d = modelWith("cut-index", SafetensorsSet.INDEX, cut);
    Files.delete(d.resolve("model.safetensors"));
    scoreFails(d, SafetensorsSet.INDEX, "not valid JSON: End of input");
    byte[] header = "{\"a\": {\"dtype\": \"F32\", \"shape\": [1], \"data_offsets\": [0, 4]}, x".getBytes(StandardCharsets.UTF_8);
    ByteBuffer st = ByteBuffer.allocate(8 + header.length + 4).order(ByteOrder.LITTLE_ENDIAN);
    st.putLong(header.length).put(header);
    scoreFails(modelWith("bad-header", "model.safetensors", st.array()), "model.safetensors", "header is not valid JSON:");
    // Gson's own message, as a library may pass it on
    JsonParseException e = assertThrows(JsonParseException.class, () -> JsonParser.parseString("{\"a\": 1 \"b\"}"));
    assertTrue(e.getMessage().contains("https://"), "Gson adds its troubleshooting link: " + e.getMessage());
    String m = Messages.of(new IllegalStateException("config x: " + e));
    assertFalse(LEAK.matcher(m).find(), m);
    assertTrue(m.startsWith("config x: ") && m.contains(" at line 1 column "), m);
    assertFalse(JsonErrors.message(e).contains("https://"), JsonErrors.message(e));
  }

  @Test
  void case7MalformedTokenizerJsonHasNoClassNameAndNoLink() throws IOException {
    // the tokenizers library reads tokenizer.json (the GPU check runs without it: then this is skipped)
    assumeTrue(HfTokenizer.isAvailable(), HfTokenizer.unavailableReason());
    byte[] cut = "{\"model_type\": \"gpt2\", \"n_embd\": [1, 2".getBytes(StandardCharsets.UTF_8);
    scoreFails(modelWith("cut-tokenizer", "tokenizer.json", cut), "tokenizer.json", "line 1 column");
  }

  @Test
  void case7FileAlreadyExistsSaysWhichFileAndWhat() throws IOException {
    Path file = Files.writeString(tmp.resolve("taken"), "x");
    CliTest.Out r = CliTest.run("train", "--preset", "gpt2-tiny", "--data", good.toString(), "--device", "cpu", "--out",
        file.toString());
    assertEquals(2, r.code(), r.err());
    assertTrue(r.err().startsWith("athanor train: --out " + file + " is a file, not a directory; give another --out"), r.err());
    assertFalse(LEAK.matcher(r.err()).find(), r.err());
    // where an exception still carries one: the file and the words
    assertEquals(file + ": already exists", Messages.of(new UncheckedIOException(new FileAlreadyExistsException(file.toString()))));
    assertEquals("cannot save: file already exists: " + file,
        Messages.of(new IllegalStateException("cannot save: " + new FileAlreadyExistsException(file.toString()))));
    assertEquals(file + ": already exists",
        dev.athanor.io.FileProblems.describe(new FileAlreadyExistsException(file.toString())));
    // saving a model over a file
    var e = assertThrows(RuntimeException.class, () -> {
      try (Transformer m = Transformer.create(CFG, Device.CPU)) {
        HfModelDir.save(file, CFG, m.weights(), DType.F32);
      }
    });
    assertFalse(LEAK.matcher(e.getMessage()).find(), e.getMessage());
    assertTrue(e.getMessage().startsWith(file + ": cannot create the model directory: already exists"), e.getMessage());
  }

  @Test
  void case7ThreadCountsNameTheLimitNotANativeStatus() {
    CliTest.Out r = CliTest.run("generate", "--model", good.toString(), "--prompt", "x", "--threads", "100000");
    assertEquals(2, r.code(), r.err());
    assertTrue(r.err().startsWith("athanor generate: Invalid value for option '--threads': 100000 is out of range (expected "
        + "an integer in [1, " + Options.Threads.maxThreads() + "]"), r.err());
    assertFalse(LEAK.matcher(r.err()).find(), r.err());
    IllegalArgumentException e = assertThrows(IllegalArgumentException.class, () -> NativeRuntime.setCpuThreads(100000));
    assertEquals("CPU threads must be in [1, 4096], got 100000", e.getMessage());
    // a native failure that reaches the command line: its message, without the status code
    NativeException n = new NativeException(NativeException.INVALID, "ath_cpu_set_threads: n=0 must be in [1, 4096]");
    assertEquals("ath_cpu_set_threads: n=0 must be in [1, 4096]", Messages.of(n));
    assertEquals("cannot start: n=0 must be in [1, 4096]", Messages.of(new IllegalStateException("cannot start: " + n.getMessage()
        .replace("ath_cpu_set_threads: ", ""))));
  }

  @Test
  void case7BugsAreCalledBugs() {
    String m = Messages.of(new NullPointerException("Cannot invoke \"Object.toString()\" because \"x\" is null"));
    assertTrue(m.startsWith("internal error (null pointer: ") && m.contains("this is a bug: please report it"), m);
  }
}
