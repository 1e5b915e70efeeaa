package dev.athanor.nn;

import dev.athanor.params.ParamSpec;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.TreeMap;

/**
 * The architecture of a decoder-only transformer of the GPT-2 or Llama family (see {@link Family}).
 *
 * @param family GPT-2 or Llama layout, norms, activation and positions
 * @param vocabSize tokens in the vocabulary (rows of the embedding and of the output head)
 * @param maxSeqLen the context length (GPT-2: {@code n_positions}; Llama: {@code max_position_embeddings})
 * @param layers transformer blocks
 * @param hidden the model width C
 * @param heads query heads; the head dimension is {@code hidden / heads}
 * @param kvHeads key/value heads (grouped-query attention; GPT-2 requires {@code kvHeads == heads})
 * @param intermediate the MLP's inner width (GPT-2 usually 4C)
 * @param normEps epsilon of LayerNorm (GPT-2) or RMSNorm (Llama)
 * @param ropeTheta the rotary base (Llama; ignored for GPT-2)
 * @param tiedEmbeddings whether the output head reuses the token embedding matrix
 * @param bosTokenId the beginning-of-sequence token, or -1
 * @param eosTokenId the end-of-sequence token, or -1
 */
public record ModelConfig(Family family, int vocabSize, int maxSeqLen, int layers, int hidden, int heads, int kvHeads,
    int intermediate, float normEps, float ropeTheta, boolean tiedEmbeddings, int bosTokenId, int eosTokenId) {

  public ModelConfig(Family family, int vocabSize, int maxSeqLen, int layers, int hidden, int heads, int kvHeads,
      int intermediate, float normEps, float ropeTheta, boolean tiedEmbeddings, int bosTokenId, int eosTokenId) {
    if (family == null) throw new IllegalArgumentException("family is null");
    positive("vocabSize", vocabSize);
    positive("maxSeqLen", maxSeqLen);
    positive("layers", layers);
    positive("hidden", hidden);
    positive("heads", heads);
    positive("kvHeads", kvHeads);
    positive("intermediate", intermediate);
    if (hidden % heads != 0) {
      throw new IllegalArgumentException("hidden " + hidden + " is not divisible by heads " + heads);
    }
    if (heads % kvHeads != 0) {
      throw new IllegalArgumentException("heads " + heads + " is not divisible by kvHeads " + kvHeads);
    }
    if (family == Family.GPT2 && kvHeads != heads) {
      throw new IllegalArgumentException("GPT-2 has no grouped-query attention: kvHeads " + kvHeads + " != heads " + heads);
    }
    if (family == Family.LLAMA && (hidden / heads) % 2 != 0) {
      throw new IllegalArgumentException("rotary embeddings need an even head dimension, got " + hidden / heads);
    }
    if (!(normEps > 0) || !Float.isFinite(normEps)) throw new IllegalArgumentException("normEps must be > 0, got " + normEps);
    if (family == Family.LLAMA && (!(ropeTheta > 0) || !Float.isFinite(ropeTheta))) {
      throw new IllegalArgumentException("ropeTheta must be > 0, got " + ropeTheta);
    }
    if (bosTokenId < -1 || bosTokenId >= vocabSize) {
      throw new IllegalArgumentException("bosTokenId " + bosTokenId + " outside [-1, " + vocabSize + ")");
    }
    if (eosTokenId < -1 || eosTokenId >= vocabSize) {
      throw new IllegalArgumentException("eosTokenId " + eosTokenId + " outside [-1, " + vocabSize + ")");
    }
    this.family = family;
    this.vocabSize = vocabSize;
    this.maxSeqLen = maxSeqLen;
    this.layers = layers;
    this.hidden = hidden;
    this.heads = heads;
    this.kvHeads = kvHeads;
    this.intermediate = intermediate;
    this.normEps = normEps;
    this.ropeTheta = ropeTheta;
    this.tiedEmbeddings = tiedEmbeddings;
    this.bosTokenId = bosTokenId;
    this.eosTokenId = eosTokenId;
    try {
      parameterCount();  // from the fields: one block's shapes times the layers
    } catch (ArithmeticException e) {
      throw new IllegalArgumentException("the model is too large: its parameter count does not fit in 64 bits (" + layers
          + " layers, hidden " + hidden + ", intermediate " + intermediate + ", vocab " + vocabSize + ")");
    }
  }

  private static void positive(String name, int v) {
    if (v <= 0) throw new IllegalArgumentException(name + " must be > 0, got " + v);
  }

  /** A GPT-2 configuration (tied head, 4C MLP, eps 1e-5, token 50256 as BOS and EOS when the vocab has it). */
  public static ModelConfig gpt2(int vocabSize, int maxSeqLen, int layers, int hidden, int heads) {
    if (hidden > Integer.MAX_VALUE / 4) {
      throw new IllegalArgumentException("hidden " + hidden + " is too large: the MLP's width 4 x hidden = " + 4L * hidden
          + " exceeds the largest width, " + Integer.MAX_VALUE);
    }
    int eot = vocabSize > 50256 ? 50256 : -1;
    return new ModelConfig(Family.GPT2, vocabSize, maxSeqLen, layers, hidden, heads, heads, 4 * hidden, 1e-5f, 0f,
        true, eot, eot);
  }

  /** A Llama configuration (RMSNorm eps 1e-5, no BOS/EOS ids). */
  public static ModelConfig llama(int vocabSize, int maxSeqLen, int layers, int hidden, int heads, int kvHeads,
      int intermediate, float ropeTheta, boolean tied) {
    return new ModelConfig(Family.LLAMA, vocabSize, maxSeqLen, layers, hidden, heads, kvHeads, intermediate, 1e-5f,
        ropeTheta, tied, -1, -1);
  }

  /** Named presets: sizes people know, and the small model of the CPU demo. */
  public static Map<String, ModelConfig> presets() {
    Map<String, ModelConfig> m = new TreeMap<>();
    m.put("gpt2", gpt2(50257, 1024, 12, 768, 12));
    m.put("gpt2-medium", gpt2(50257, 1024, 24, 1024, 16));
    m.put("gpt2-large", gpt2(50257, 1024, 36, 1280, 20));
    m.put("gpt2-xl", gpt2(50257, 1024, 48, 1600, 25));
    m.put("gpt2-tiny", gpt2(50257, 256, 4, 256, 4));
    m.put("llama-tiny", llama(50257, 256, 4, 256, 4, 2, 688, 10000f, true));
    return m;
  }

  /** The preset called {@code name}; throws listing the known ones otherwise. */
  public static ModelConfig preset(String name) {
    ModelConfig c = presets().get(name);
    if (c == null) throw new IllegalArgumentException("unknown model preset \"" + name + "\"; known: " + presets().keySet());
    return c;
  }

  /** The dimension of one attention head. */
  public int headDim() {
    return hidden / heads;
  }

  /** The width of the key (and value) projection: {@code kvHeads * headDim}. */
  public int kvDim() {
    return kvHeads * headDim();
  }

  /** This config with another context length. */
  public ModelConfig withMaxSeqLen(int t) {
    return new ModelConfig(family, vocabSize, t, layers, hidden, heads, kvHeads, intermediate, normEps, ropeTheta,
        tiedEmbeddings, bosTokenId, eosTokenId);
  }

  /** This config with another vocabulary size (ids outside it become invalid). */
  public ModelConfig withVocabSize(int v) {
    return new ModelConfig(family, v, maxSeqLen, layers, hidden, heads, kvHeads, intermediate, normEps, ropeTheta,
        tiedEmbeddings, bosTokenId < v ? bosTokenId : -1, eosTokenId < v ? eosTokenId : -1);
  }

  /** The name prefix of block {@code i}'s tensors, e.g. {@code transformer.h.3.} or {@code model.layers.3.}. */
  public String blockPrefix(int i) {
    return (family == Family.GPT2 ? "transformer.h." : "model.layers.") + i + ".";
  }

  /**
   * Every parameter in a fixed order (embeddings, blocks in order, final norm, head), with Hugging Face names
   * and layouts as {@code save_pretrained} writes them today. A tied head has no tensor of its own.
   */
  public List<ParamSpec> parameterSpecs() {
    List<ParamSpec> p = new ArrayList<>(embeddingSpecs());
    for (int i = 0; i < layers; i++) p.addAll(blockSpecs(i));
    p.addAll(headSpecs());
    return p;
  }

  /** The parameters in front of the blocks: the token embedding (and GPT-2's position embedding). */
  public List<ParamSpec> embeddingSpecs() {
    long c = hidden, v = vocabSize;
    List<ParamSpec> p = new ArrayList<>();
    p.add(new ParamSpec(embeddingName(), new long[] {v, c}, true));
    if (family == Family.GPT2) p.add(new ParamSpec("transformer.wpe.weight", new long[] {maxSeqLen, c}, true));
    return p;
  }

  /** The parameters of block {@code i} (every block has the same shapes). */
  public List<ParamSpec> blockSpecs(int i) {
    List<ParamSpec> p = new ArrayList<>();
    long c = hidden, f = intermediate;
    String b = blockPrefix(i);
    if (family == Family.GPT2) {
      p.add(new ParamSpec(b + "ln_1.weight", new long[] {c}, false));
      p.add(new ParamSpec(b + "ln_1.bias", new long[] {c}, false));
      p.add(new ParamSpec(b + "attn.c_attn.weight", new long[] {c, 3 * c}, true));
      p.add(new ParamSpec(b + "attn.c_attn.bias", new long[] {3 * c}, false));
      p.add(new ParamSpec(b + "attn.c_proj.weight", new long[] {c, c}, true));
      p.add(new ParamSpec(b + "attn.c_proj.bias", new long[] {c}, false));
      p.add(new ParamSpec(b + "ln_2.weight", new long[] {c}, false));
      p.add(new ParamSpec(b + "ln_2.bias", new long[] {c}, false));
      p.add(new ParamSpec(b + "mlp.c_fc.weight", new long[] {c, f}, true));
      p.add(new ParamSpec(b + "mlp.c_fc.bias", new long[] {f}, false));
      p.add(new ParamSpec(b + "mlp.c_proj.weight", new long[] {f, c}, true));
      p.add(new ParamSpec(b + "mlp.c_proj.bias", new long[] {c}, false));
    } else {
      long kv = kvDim();
      p.add(new ParamSpec(b + "input_layernorm.weight", new long[] {c}, false));
      p.add(new ParamSpec(b + "self_attn.q_proj.weight", new long[] {c, c}, true));
      p.add(new ParamSpec(b + "self_attn.k_proj.weight", new long[] {kv, c}, true));
      p.add(new ParamSpec(b + "self_attn.v_proj.weight", new long[] {kv, c}, true));
      p.add(new ParamSpec(b + "self_attn.o_proj.weight", new long[] {c, c}, true));
      p.add(new ParamSpec(b + "post_attention_layernorm.weight", new long[] {c}, false));
      p.add(new ParamSpec(b + "mlp.gate_proj.weight", new long[] {f, c}, true));
      p.add(new ParamSpec(b + "mlp.up_proj.weight", new long[] {f, c}, true));
      p.add(new ParamSpec(b + "mlp.down_proj.weight", new long[] {c, f}, true));
    }
    return p;
  }

  /** The parameters behind the blocks: the final norm and, when untied, the output head. */
  public List<ParamSpec> headSpecs() {
    long c = hidden, v = vocabSize;
    List<ParamSpec> p = new ArrayList<>();
    if (family == Family.GPT2) {
      p.add(new ParamSpec("transformer.ln_f.weight", new long[] {c}, false));
      p.add(new ParamSpec("transformer.ln_f.bias", new long[] {c}, false));
    } else {
      p.add(new ParamSpec("model.norm.weight", new long[] {c}, false));
    }
    if (!tiedEmbeddings) p.add(new ParamSpec("lm_head.weight", new long[] {v, c}, true));
    return p;
  }

  /**
   * The parameters of {@code stage} grouped into units, in layout order: {@code embedding} (token and, for GPT-2,
   * position embeddings) when the stage has it, {@code block.<i>} for each of its blocks, and {@code head} (the final
   * norm, the untied output head, and the token embedding when the head is tied but the stage has no embedding).
   */
  public Map<String, List<ParamSpec>> parameterUnits(Stage stage) {
    if (stage.endBlock() > layers) {
      throw new IllegalArgumentException("stage " + stage + " exceeds the model's " + layers + " blocks");
    }
    Map<String, List<ParamSpec>> units = new LinkedHashMap<>();
    List<ParamSpec> all = parameterSpecs();
    String emb = embeddingName();
    for (ParamSpec s : all) {
      String unit = unitOf(s.name());
      boolean keep;
      if (unit.equals(EMBEDDING_UNIT)) {
        keep = stage.embedding();
      } else if (unit.equals(HEAD_UNIT)) {
        keep = stage.head();
      } else {
        int b = Integer.parseInt(unit.substring(BLOCK_UNIT_PREFIX.length()));
        keep = b >= stage.firstBlock() && b < stage.endBlock();
      }
      if (keep) units.computeIfAbsent(unit, k -> new ArrayList<>()).add(s);
    }
    if (stage.head() && tiedEmbeddings && !stage.embedding()) {
      ParamSpec wte = all.stream().filter(s -> s.name().equals(emb)).findFirst().orElseThrow();
      units.computeIfAbsent(HEAD_UNIT, k -> new ArrayList<>()).add(wte);  // the head's copy of the tied matrix
    }
    return units;
  }

  /** Unit names of {@link #parameterUnits}. */
  public static final String EMBEDDING_UNIT = "embedding", HEAD_UNIT = "head", BLOCK_UNIT_PREFIX = "block.";

  /** The unit of block {@code i}. */
  public static String blockUnit(int i) {
    return BLOCK_UNIT_PREFIX + i;
  }

  private String unitOf(String name) {
    String prefix = family == Family.GPT2 ? "transformer.h." : "model.layers.";
    if (name.startsWith(prefix)) {
      int dot = name.indexOf('.', prefix.length());
      return BLOCK_UNIT_PREFIX + name.substring(prefix.length(), dot);
    }
    if (name.equals(embeddingName()) || name.equals("transformer.wpe.weight")) return EMBEDDING_UNIT;
    return HEAD_UNIT;
  }

  /**
   * The number of parameters (a tied head counted once), from one block's shapes times the layers, so it costs the
   * same for any depth. The constructor checks that it fits in a long.
   */
  public long parameterCount() {
    return Math.addExact(Math.addExact(numel(embeddingSpecs()), Math.multiplyExact(layers, numel(blockSpecs(0)))),
        numel(headSpecs()));
  }

  private static long numel(List<ParamSpec> specs) {
    long n = 0;
    for (ParamSpec s : specs) n = Math.addExact(n, s.numel());
    return n;
  }

  /** The name of the token embedding tensor. */
  public String embeddingName() {
    return family == Family.GPT2 ? "transformer.wte.weight" : "model.embed_tokens.weight";
  }
}
