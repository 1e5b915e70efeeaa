package dev.athanor.cli;

import dev.athanor.infer.NonFiniteLogitsException;
import dev.athanor.io.data.TokenFiles;
import dev.athanor.io.hf.HfModelDir;
import dev.athanor.io.tokenizer.Tokenizer;
import dev.athanor.nn.Footprint;
import dev.athanor.nn.ModelConfig;
import dev.athanor.nn.Transformer;
import dev.athanor.runtime.Device;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.concurrent.Callable;
import picocli.CommandLine.ArgGroup;
import picocli.CommandLine.Model.CommandSpec;
import picocli.CommandLine.Spec;
import picocli.CommandLine.Command;
import picocli.CommandLine.Option;
import picocli.CommandLine.ParentCommand;

/**
 * {@code athanor score}: the log-probability a model gives each next token of a sequence, and their mean
 * loss, as JSON. Sequences longer than the context are scored in consecutive windows of the context length
 * (each window's first token is context only, as in llm.c's evaluation).
 */
@Command(name = "score", sortOptions = false, abbreviateSynopsis = true,
    description = {"The log-probability a model gives each next token of a text or a token file, and their mean loss, "
        + "as one JSON object on stdout. Longer than the context: scored in consecutive windows of the context length."},
    footer = {"%nExample:", "  athanor score --model runs/mine --text \"int x = 1;\""})
final class ScoreCommand implements Callable<Integer> {
  @ParentCommand Main main;

  @Option(names = "--model", required = true, paramLabel = "DIR", description = "a Hugging Face model directory")
  Path model;

  @ArgGroup(exclusive = true, multiplicity = "1", heading = "%nInput (exactly one):%n")
  Input input;

  /** What to score. */
  static final class Input {
    @Option(names = "--tokens", paramLabel = "FILE", description = "token ids (whitespace- or comma-separated text, or an llm.c .bin shard)")
    Path tokens;

    @Option(names = "--text", paramLabel = "TEXT", description = "text, tokenized with the model's tokenizer")
    String text;
  }

  @ArgGroup(exclusive = false, validate = false, heading = "%nRuntime:%n")
  Options.RuntimeOptions runtime = new Options.RuntimeOptions();

  @ArgGroup(exclusive = false, validate = false, heading = "%nOffload (CPU only: the weights on DISK, read unit by unit):%n")
  Options.OffloadOptions offload = new Options.OffloadOptions();

  @Spec CommandSpec spec;

  @Override
  public Integer call() {
    Device device = runtime.apply();
    ModelConfig mc = HfModelDir.readConfig(model);
    int[] ids;
    if (input.tokens != null) {
      ids = TokenFiles.readIds(input.tokens);
    } else {
      try (Tokenizer tok = Models.tokenizer(model, mc)) {
        ids = textIds(mc, tok, input.text);
      }
    }
    if (ids.length < 2) throw new IllegalArgumentException("need at least 2 tokens to score, got " + ids.length);
    boolean disk = InferenceOffload.weightsOnDisk(spec, offload, Footprint.forward(mc, device,
        Transformer.defaultComputeDtype(device), 1, Math.min(mc.maxSeqLen(), ids.length - 1)).withLoading(),
        "score with this model", "score a shorter text (it is scored in windows of up to the model's context, "
        + mc.maxSeqLen() + " tokens)", "use a smaller model");
    try (InferenceOffload.Opened opened = InferenceOffload.open(model, device, disk, offload.dir)) {
      float[] logprobs = score(opened.model(), ids);
      if (disk) main.err.println("athanor score: " + opened.traffic());
      double sum = 0;
      for (float lp : logprobs) sum -= lp;
      Map<String, Object> json = new LinkedHashMap<>();
      json.put("tokens", ids.length);
      json.put("scored", logprobs.length);
      json.put("mean_loss", Json.round(sum / logprobs.length, 6));
      List<Float> lp = new ArrayList<>(logprobs.length);
      for (float x : logprobs) lp.add(x);
      json.put("logprobs", lp);
      main.out.println(Json.write(json));
    }
    return 0;
  }

  private static int[] textIds(ModelConfig mc, Tokenizer tok, String text) {
    return Models.withBos(mc, tok, tok.encode(text));
  }

  /**
   * log p(ids[i+1] | ids[..i]) for every scored position, window by window.
   *
   * @throws NonFiniteLogitsException at the first position whose loss is NaN or infinite (non-finite logits)
   */
  static float[] score(Transformer model, int[] ids) {
    int ctx = model.config().maxSeqLen();
    float[] result = new float[ids.length - 1];
    int done = 0;
    for (int start = 0; start < ids.length - 1; start += ctx) {
      int len = Math.min(ctx, ids.length - 1 - start);
      int[] in = Arrays.copyOfRange(ids, start, start + len);
      int[] tg = Arrays.copyOfRange(ids, start + 1, start + 1 + len);
      model.forward(in, tg, 1, len);
      float[] losses = model.tokenLosses();
      for (int i = 0; i < len; i++) {
        if (!Float.isFinite(losses[i])) throw new NonFiniteLogitsException("the loss", 0, start + i, losses[i]);
        result[done++] = -losses[i];
      }
    }
    return result;
  }
}
