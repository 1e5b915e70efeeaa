package dev.athanor.examples;

import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.athanor.infer.Generator;
import dev.athanor.infer.SamplingConfig;
import dev.athanor.io.data.DataLoader;
import dev.athanor.io.data.TextCorpus;
import dev.athanor.io.data.TokenDataset;
import dev.athanor.io.hf.HfModelDir;
import dev.athanor.io.tokenizer.StreamDecoder;
import dev.athanor.io.tokenizer.Tokenizer;
import dev.athanor.io.tokenizer.Tokenizers;
import dev.athanor.nn.ModelConfig;
import dev.athanor.nn.Transformer;
import dev.athanor.runtime.Cuda;
import dev.athanor.runtime.Device;
import dev.athanor.tensor.DType;
import dev.athanor.train.StepResult;
import dev.athanor.train.TrainConfig;
import dev.athanor.train.Trainer;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/** The README's "Training and generating" snippet, kept compiling and working (on a tiny model). */
class ReadmeModelExampleTest {
  @Test
  void readmeModelSnippetRuns(@TempDir Path tmp) throws Exception {
    Path corpus = tmp.resolve("corpus");
    Files.createDirectories(corpus);
    Files.writeString(corpus.resolve("a.txt"), "public class Hello { static int twice(int x) { return 2 * x; } }\n".repeat(40));
    Path out = tmp.resolve("my-model");
    System.setProperty("athanor.cache.dir", tmp.resolve("cache").toString());
    ModelConfig config = ModelConfig.gpt2(50257, 64, 2, 64, 2);  // tiny for the test; the README uses a preset
    int steps = 3, batch = 2, seq = 32;
    List<Float> losses = new ArrayList<>();
    StringBuilder sample = new StringBuilder();
    // --- README snippet begins
    Device device = Cuda.isAvailable() ? Device.cuda(0) : Device.CPU;
    Tokenizer tok = Tokenizers.gpt2();                                   // r50k_base
    try (Transformer model = Transformer.create(config, device);
        TokenDataset data = TextCorpus.prepare(corpus, tok, TextCorpus.Options.defaults(), null);
        Trainer trainer = new Trainer(model, TrainConfig.defaults(steps, batch, seq),
            new DataLoader(data, batch, seq, /* shuffle */ true, /* seed */ 1))) {
      model.initialize(1337);
      while (!trainer.done()) {
        StepResult r = trainer.step();                                   // forward, backward, clip, AdamW
        losses.add(r.loss());
      }
      HfModelDir.save(out, model.config(), model.weights(), DType.F32);  // config.json + model.safetensors
      int[] prompt = tok.encode("public class");
      StreamDecoder text = tok.streamDecoder(prompt);                    // decodes in the prompt's context
      new Generator(model).generate(prompt, SamplingConfig.defaults(20, 7),
          (sequence, token) -> sample.append(text.push(token)));          // streamed, whole characters only
      sample.append(text.flush());
    }
    // --- README snippet ends
    assertTrue(losses.size() == steps && losses.get(0) > 5, "losses " + losses);
    assertTrue(Files.isRegularFile(out.resolve("model.safetensors")) && Files.isRegularFile(out.resolve("config.json")));
    assertTrue(!sample.isEmpty(), "no text was generated");
  }
}
