package dev.athanor.io.data;

import com.knuddels.jtokkit.Encodings;
import com.knuddels.jtokkit.api.Encoding;
import com.knuddels.jtokkit.api.EncodingType;
import com.knuddels.jtokkit.api.IntArrayList;
import dev.athanor.io.tokenizer.Tokenizer;
import java.io.ByteArrayOutputStream;
import java.nio.charset.StandardCharsets;
import java.util.OptionalInt;
import java.util.concurrent.atomic.AtomicInteger;
import java.util.concurrent.atomic.AtomicLong;

/** Small tokenizers for the data tests. */
final class FakeTokenizers {
  private FakeTokenizers() {}

  /** id = UTF-8 byte value; eos = 256 (vocabulary 257). Decoding is exact for any text. */
  static class Bytes implements Tokenizer {
    private final boolean withEos;

    Bytes(boolean withEos) {
      this.withEos = withEos;
    }

    Bytes() {
      this(true);
    }

    @Override
    public String id() {
      return withEos ? "test-bytes" : "test-bytes-noeos";
    }

    @Override
    public int vocabSize() {
      return 257;
    }

    @Override
    public int[] encode(String text) {
      byte[] b = text.getBytes(StandardCharsets.UTF_8);
      int[] ids = new int[b.length];
      for (int i = 0; i < b.length; i++) ids[i] = b[i] & 0xff;
      return ids;
    }

    @Override
    public String decode(int[] ids) {
      ByteArrayOutputStream out = new ByteArrayOutputStream();
      for (int id : ids) out.writeBytes(tokenBytes(id));
      return out.toString(StandardCharsets.UTF_8);
    }

    @Override
    public OptionalInt eosToken() {
      return withEos ? OptionalInt.of(256) : OptionalInt.empty();
    }

    byte[] tokenBytes(int id) {
      return id == 256 ? "<|eos|>".getBytes(StandardCharsets.UTF_8) : new byte[] {(byte) id};
    }
  }

  /** GPT-2 r50k_base through JTokkit directly (not the project's Gpt2Tokenizer). */
  static final class R50k implements Tokenizer {
    private static final Encoding ENC = Encodings.newDefaultEncodingRegistry().getEncoding(EncodingType.R50K_BASE);

    @Override
    public String id() {
      return "test-jtokkit-r50k_base";
    }

    @Override
    public int vocabSize() {
      return 50257;
    }

    @Override
    public int[] encode(String text) {
      return ENC.encodeOrdinary(text).toArray();
    }

    @Override
    public String decode(int[] ids) {
      IntArrayList l = new IntArrayList(ids.length);
      for (int id : ids) l.add(id);
      return ENC.decode(l);
    }

    @Override
    public OptionalInt eosToken() {
      return OptionalInt.of(50256);
    }
  }

  /** Counts encode calls and encoded chars of a delegate. */
  static final class Counting implements Tokenizer {
    final Tokenizer inner;
    final AtomicInteger calls = new AtomicInteger();
    final AtomicLong chars = new AtomicLong();

    Counting(Tokenizer inner) {
      this.inner = inner;
    }

    @Override
    public String id() {
      return inner.id();
    }

    @Override
    public int vocabSize() {
      return inner.vocabSize();
    }

    @Override
    public int[] encode(String text) {
      calls.incrementAndGet();
      chars.addAndGet(text.length());
      return inner.encode(text);
    }

    @Override
    public String decode(int[] ids) {
      return inner.decode(ids);
    }

    @Override
    public OptionalInt eosToken() {
      return inner.eosToken();
    }
  }
}
