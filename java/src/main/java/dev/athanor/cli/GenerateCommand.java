package dev.athanor.cli;

import dev.athanor.cli.Options.Range;
import dev.athanor.infer.Generator;
import dev.athanor.infer.SamplingConfig;
import dev.athanor.io.tokenizer.StreamDecoder;
import dev.athanor.io.hf.HfModelDir;
import dev.athanor.io.tokenizer.Tokenizer;
import dev.athanor.nn.Footprint;
import dev.athanor.nn.ModelConfig;
import dev.athanor.nn.Transformer;
import dev.athanor.runtime.Device;
import dev.athanor.tensor.DType;
import java.io.PrintStream;
import java.nio.file.Path;
import java.util.concurrent.Callable;
import picocli.CommandLine.ArgGroup;
import picocli.CommandLine.Model.CommandSpec;
import picocli.CommandLine.Spec;
import picocli.CommandLine.Command;
import picocli.CommandLine.Option;
import picocli.CommandLine.ParentCommand;

/** {@code athanor generate}: continue a prompt with a saved model, streaming the text as it is produced. */
@Command(name = "generate", sortOptions = false, abbreviateSynopsis = true,
    description = "Continue a prompt with a saved model (a Hugging Face directory), streaming the text to stdout.",
    footer = {"%nExample:", "  athanor generate --model runs/mine --prompt \"public static\" --max-tokens 200"})
final class GenerateCommand implements Callable<Integer> {
  @ParentCommand Main main;

  @Option(names = "--model", required = true, paramLabel = "DIR", description = "a Hugging Face model directory")
  Path model;

  @Option(names = "--prompt", required = true, paramLabel = "TEXT", description = "the text to continue")
  String prompt;

  @Option(names = "--max-tokens", paramLabel = "N", defaultValue = "200", description = "tokens to generate. Default: ${DEFAULT-VALUE}")
  @Range(min = 0)
  int maxTokens;

  @Option(names = "--temperature", paramLabel = "T", defaultValue = "0.8",
      description = "sampling temperature (0 = greedy). Default: ${DEFAULT-VALUE}")
  @Range(min = 0)
  float temperature;

  @Option(names = "--top-k", paramLabel = "K", defaultValue = "40", description = "sample from the K likeliest tokens (0 = all). Default: ${DEFAULT-VALUE}")
  @Range(min = 0)
  int topK;

  @Option(names = "--top-p", paramLabel = "P", defaultValue = "0.95", description = "nucleus sampling mass. Default: ${DEFAULT-VALUE}")
  @Range(min = 0, minExclusive = true, max = 1)
  float topP;

  @Option(names = "--seed", paramLabel = "SEED", defaultValue = "0", description = "sampling seed. Default: ${DEFAULT-VALUE}")
  long seed;

  @Option(names = "--no-stop", paramLabel = "BOOL", arity = "0..1", fallbackValue = "true", description = "keep going past the end-of-text token")
  boolean noStop;

  @ArgGroup(exclusive = false, validate = false, heading = "%nRuntime:%n")
  Options.RuntimeOptions runtime = new Options.RuntimeOptions();

  @ArgGroup(exclusive = false, validate = false, heading = "%nOffload (CPU only: the weights and the KV cache on DISK, read layer by layer):%n")
  Options.OffloadOptions offload = new Options.OffloadOptions();

  @Spec CommandSpec spec;

  @Override
  public Integer call() {
    SamplingConfig sc = new SamplingConfig(temperature, topK, topP, seed, maxTokens, !noStop);
    Device device = runtime.apply();
    ModelConfig mc = HfModelDir.readConfig(model);
    try (Tokenizer tok = Models.tokenizer(model, mc)) {
      int vocab = mc.vocabSize(), sampled = Models.sampledVocab(tok, mc);
      int[] ids = promptIds(mc, tok, prompt);
      int promptLen = ids.length;
      int capacity = (int) Math.min(mc.maxSeqLen(), (long) promptLen + maxTokens);
      DType dt = Transformer.defaultComputeDtype(device);
      InferenceOffload.Placement placed = InferenceOffload.place(spec, offload, Footprint.decoding(mc, device, dt, 1,
          Math.min(promptLen, capacity), capacity).withLoading(), Footprint.kvCacheLayout(mc, dt, 1, capacity),
          "generate with this model", "use a smaller --max-tokens or a shorter --prompt (the KV cache grows with both)",
          "use a smaller model");
      if (!offload.off()) main.err.println("athanor generate: placed " + placed.describe());
      if (sampled < vocab) {
        main.err.println("athanor generate: note: the tokenizer has " + sampled + " token ids and the model's vocabulary "
            + vocab + " rows; ids " + sampled + " to " + (vocab - 1) + " have no text and are never generated");
      }
      try (InferenceOffload.Opened m = InferenceOffload.open(model, device, placed.weightsOnDisk(), placed.kvOnDisk(),
          offload.dir)) {
        generate(m.model(), tok, prompt, ids, sc, main.out);
        if (placed.weightsOnDisk() || placed.kvOnDisk()) main.err.println("athanor generate: " + m.traffic());
      }
    }
    return 0;
  }

  /**
   * Streams the prompt and its continuation to {@code out}; returns the generated text. Only the tokenizer's ids are
   * generated ({@link Models#sampledVocab}).
   */
  static String generate(Transformer model, Tokenizer tok, String prompt, SamplingConfig sc, PrintStream out) {
    return generate(model, tok, prompt, promptIds(model.config(), tok, prompt), sc, out);
  }

  /** The ids generation starts from: the prompt's (with BOS when the model wants it), or BOS/EOS alone for an empty one. */
  static int[] promptIds(ModelConfig mc, Tokenizer tok, String prompt) {
    int[] ids = Models.withBos(mc, tok, tok.encode(prompt));
    if (ids.length == 0) {
      if (tok.bosToken().isEmpty() && tok.eosToken().isEmpty()) throw new IllegalArgumentException("--prompt is empty");
      ids = new int[] {tok.bosToken().orElse(tok.eosToken().getAsInt())};
    }
    return ids;
  }

  /** As {@link #generate(Transformer, Tokenizer, String, SamplingConfig, PrintStream)} from {@code ids}, the prompt's ids. */
  private static String generate(Transformer model, Tokenizer tok, String prompt, int[] ids, SamplingConfig sc,
      PrintStream out) {
    StreamDecoder dec = tok.streamDecoder(ids); // in the prompt's context: the first new token keeps its space
    StringBuilder text = new StringBuilder();
    out.print(prompt);
    out.flush();
    int eos = model.config().eosTokenId();
    new Generator(model, Models.sampledVocab(tok, model.config())).generate(ids, sc, (s, t) -> {
      if (t == eos && sc.stopAtEos()) return;
      String piece = dec.push(t);
      text.append(piece);
      out.print(piece);
      out.flush();
    });
    String rest = dec.flush();
    text.append(rest);
    out.println(rest);
    return text.toString();
  }
}
