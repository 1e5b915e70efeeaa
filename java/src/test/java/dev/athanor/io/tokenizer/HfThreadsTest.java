package dev.athanor.io.tokenizer;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;
import static org.junit.jupiter.api.Assumptions.assumeTrue;

import dev.athanor.io.data.TextCorpus;
import dev.athanor.io.data.TokenDataset;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.Set;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.concurrent.Future;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * One HfTokenizer shared by many threads gives every thread the same ids as one thread does, and a text corpus
 * tokenized with it is the same for any worker count (and, for GPT-2's vocabulary, the same as JTokkit's).
 */
class HfThreadsTest {
  @TempDir Path dir;

  @Test
  void encodesConcurrently() throws Exception {
    assumeTrue(HfTokenizer.isAvailable(), HfTokenizer.unavailableReason());
    List<String> texts = new ArrayList<>(SampleTexts.randomStrings(99, 64, 400, -1));
    Path src = SampleTexts.jdkSources();
    if (src != null) texts.addAll(SampleTexts.jdkSourceFiles(src, "java.base/java/util/", 300_000));
    for (String name : List.of("llama2-style", "llama3-style", "unigram")) {
      try (HfTokenizer t = HfFixturesTest.load(name, dir)) {
        List<int[]> expected = texts.stream().map(t::encode).toList();
        ExecutorService pool = Executors.newFixedThreadPool(4);
        try {
          List<Future<Integer>> fs = new ArrayList<>();
          for (int k = 0; k < 4; k++) {
            int offset = k;
            fs.add(pool.submit(() -> {
              int bad = 0;
              for (int r = 0; r < 3; r++) {
                for (int i = 0; i < texts.size(); i++) {
                  int j = (i + offset * 7) % texts.size();
                  if (!Arrays.equals(expected.get(j), t.encode(texts.get(j)))) bad++;
                  if (!texts.get(j).isEmpty() && t.decode(expected.get(j)).isEmpty()) bad++;
                }
              }
              return bad;
            }));
          }
          for (Future<Integer> f : fs) assertEquals(0, f.get(), name);
        } finally {
          pool.shutdownNow();
        }
      }
    }
  }

  @Test
  void corpusIsTheSameForAnyThreadCountAndMatchesJtokkit() throws Exception {
    assumeTrue(HfTokenizer.isAvailable(), HfTokenizer.unavailableReason());
    Path src = SampleTexts.jdkSources();
    assumeTrue(src != null, "the JDK has no lib/src.zip");
    Path json = dir.resolve("r50k.json");
    Files.writeString(json, R50kTokenizerJson.build(false, true).json());
    TextCorpus.Options o = TextCorpus.Options.defaults().withMaxBytes(1_500_000).withExtensions(Set.of("java"));
    int[] reference;
    try (TokenDataset d = TextCorpus.prepare(src, Gpt2Tokenizer.instance(), o.withCacheDir(dir.resolve("jtokkit")), null)) {
      reference = all(d);
    }
    assertTrue(reference.length > 300_000, reference.length + " tokens");
    try (HfTokenizer hf = HfTokenizer.load(json)) {
      for (int threads : new int[] {1, 3}) {
        try (TokenDataset d = TextCorpus.prepare(src, hf, o.withThreads(threads).withCacheDir(dir.resolve("t" + threads)),
            null)) {
          assertArrayEquals(reference, all(d), threads + " threads");
        }
      }
    }
  }

  private static int[] all(TokenDataset d) {
    int[] out = new int[Math.toIntExact(d.size())];
    d.read(0, out, 0, out.length);
    return out;
  }
}
