package dev.athanor.infer;

import dev.athanor.nn.KvCache;
import dev.athanor.nn.Transformer;
import dev.athanor.tensor.Tensor;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Objects;

/**
 * Autoregressive generation with a key/value cache. Prompts of equal length are decoded together as one
 * batch (one forward per new token for the whole group); each prompt is prefilled in one forward.
 */
public final class Generator {
  private final Transformer model;
  private final int sampled;

  /** A generator that may produce every id of the model's vocabulary. */
  public Generator(Transformer model) {
    this(model, Objects.requireNonNull(model, "model").config().vocabSize());
  }

  /**
   * A generator that produces only ids below {@code sampledVocab}: a model's vocabulary may be padded beyond its
   * tokenizer's (GPT-2's 50,257 tokens in 50,304 rows), and those padding ids have no text. They are never
   * sampled (as if their logits were -infinity).
   *
   * @param sampledVocab in [1, the model's vocabulary size]
   */
  public Generator(Transformer model, int sampledVocab) {
    this.model = Objects.requireNonNull(model, "model");
    int vocab = model.config().vocabSize();
    if (sampledVocab < 1 || sampledVocab > vocab) {
      throw new IllegalArgumentException("sampledVocab must be in [1, " + vocab + "] (the model's vocabulary), got " + sampledVocab);
    }
    this.sampled = sampledVocab;
  }

  /** Generates for one prompt; see {@link #generate(List, SamplingConfig, TokenListener)}. */
  public int[] generate(int[] prompt, SamplingConfig cfg, TokenListener listener) {
    return generate(List.of(prompt), cfg, listener).get(0);
  }

  /**
   * Generates a continuation of every prompt (new tokens only, EOS included when it stopped there).
   * {@code listener} (may be null) sees each token as it is produced. A prompt that is empty, holds an id
   * outside the vocabulary, or leaves no room in the context for one new token is rejected.
   *
   * <p>Tokens are sampled where the logits are ({@link Sampler}): on CUDA only their ids reach the host.
   *
   * @throws NonFiniteLogitsException at the first NaN or +infinite logit (or a row of only -infinite ones), naming
   *     the prompt and the position
   */
  public List<int[]> generate(List<int[]> prompts, SamplingConfig cfg, TokenListener listener) {
    int ctx = model.config().maxSeqLen(), vocab = model.config().vocabSize();
    for (int i = 0; i < prompts.size(); i++) {
      int[] p = prompts.get(i);
      if (p == null || p.length == 0) throw new IllegalArgumentException("prompt " + i + " is empty");
      if (p.length >= ctx) {
        throw new IllegalArgumentException("prompt " + i + " has " + p.length + " tokens; the model's context is " + ctx
            + " tokens, so a prompt may have at most " + (ctx - 1) + " to leave room for generation");
      }
      for (int j = 0; j < p.length; j++) {
        if (p[j] < 0 || p[j] >= vocab) {
          throw new IllegalArgumentException("prompt " + i + " token " + j + " = " + p[j] + " is outside the vocabulary [0, "
              + vocab + ")");
        }
      }
    }
    Map<Integer, List<Integer>> groups = new LinkedHashMap<>();
    for (int i = 0; i < prompts.size(); i++) groups.computeIfAbsent(prompts.get(i).length, k -> new ArrayList<>()).add(i);
    List<int[]> out = new ArrayList<>(prompts.size());
    for (int i = 0; i < prompts.size(); i++) out.add(null);
    try (Sampler sampler = new Sampler(cfg)) {
      for (Map.Entry<Integer, List<Integer>> g : groups.entrySet()) generateGroup(g.getKey(), g.getValue(), prompts, cfg,
          listener, sampler, out);
    }
    return out;
  }

  /** Prefill and decode of the prompts {@code members} (all of length {@code len}) as one batch, into {@code out}. */
  private void generateGroup(int len, List<Integer> members, List<int[]> prompts, SamplingConfig cfg,
      TokenListener listener, Sampler sampler, List<int[]> out) {
    int ctx = model.config().maxSeqLen();
    int b = members.size();
    int budget = Math.min(cfg.maxTokens(), ctx - len);
    int[][] made = new int[b][budget];
    int[] count = new int[b];
    boolean[] stopped = new boolean[b];
    if (budget == 0) {
      for (int s = 0; s < b; s++) out.set(members.get(s), new int[0]);
      return;
    }
    int eos = model.config().eosTokenId();
    try (KvCache cache = model.newCache(b, len + budget)) {
      int[] tokens = new int[b * len];
      for (int s = 0; s < b; s++) System.arraycopy(prompts.get(members.get(s)), 0, tokens, s * len, len);
      Tensor logits = model.forwardCachedLogits(cache, tokens, b, len);  // (b, V) on the model's device
      for (int t = 0; t < budget; t++) {
        int[] next = sampler.sampleRows(logits, sampled);  // only the ids leave the device
        boolean any = false;
        for (int s = 0; s < b; s++) {
          if (stopped[s]) {
            next[s] = Math.max(eos, 0);  // keeps the batch shape; never reported
            continue;
          }
          int tok = next[s];
          if (tok < 0) {
            int col = -1 - tok;
            throw new NonFiniteLogitsException("the logit of token id " + col, members.get(s), len - 1 + t,
                logits.getFloat(s, col));
          }
          made[s][count[s]++] = tok;
          if (listener != null) listener.onToken(members.get(s), tok);
          if (cfg.stopAtEos() && tok == eos) stopped[s] = true;
          else any = true;
        }
        if (!any || t == budget - 1) break;
        logits = model.forwardCachedLogits(cache, next, b, 1);
      }
    }
    for (int s = 0; s < b; s++) out.set(members.get(s), java.util.Arrays.copyOf(made[s], count[s]));
  }
}
