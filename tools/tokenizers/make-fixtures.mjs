// Makes the tokenizer.json test fixtures in java/src/test/resources/tokenizers/ with Hugging Face's own
// tokenizers library (its Node.js binding, the npm package `tokenizers`: the same Rust core as Python's), and
// records what that library makes of a list of texts, for HfFixturesTest to compare against.
//
//   mkdir /tmp/tk && cd /tmp/tk && npm init -y && npm install tokenizers@0.23.2
//   NODE_PATH=/tmp/tk/node_modules node tools/tokenizers/make-fixtures.mjs   # from the repository root
//
// Not run by the build. Each tokenizer is trained on a small corpus (this repository's README.md as of the
// fixtures' commit, plus a few lines in other scripts written here) so that its vocabulary is real but small;
// the SentencePiece-style ones then get Llama 2's layout (<unk>, <s>, </s>, the 256 <0xNN> byte tokens).
// Output per variant NAME: NAME.json (the tokenizer, as the library saves it) and NAME.expected.json
// ({library, cases: [{text, ids, decoded}]}: ids from encode(text) without special tokens, decoded from
// decode(ids, skipSpecialTokens = false)).
import { createRequire } from 'node:module';
import { readFileSync, writeFileSync, mkdirSync } from 'node:fs';
import { join } from 'node:path';

const require = createRequire(join(process.env.NODE_PATH || process.cwd(), 'x.js'));
const tk = require('tokenizers');
const version = require('tokenizers/package.json').version;
const OUT = 'java/src/test/resources/tokenizers';
mkdirSync(OUT, { recursive: true });

const EXTRA = [
  'Ελληνικά και русский текст, עברית ועربية, हिन्दी पाठ.',
  '日本語のテキストと中文文本，한국어 텍스트도 있습니다。',
  'Emoji: 👍🏽 👨‍👩‍👧‍👦 🇩🇪 — “quotes”, naïve café, Æsir, ß, ﬁ ligature, ½ ² ⅓.',
  'Tabs\tand  double  spaces,\r\nWindows lines, and trailing spaces   ',
];
const corpus = '/tmp/athanor-tokenizer-corpus.txt';
writeFileSync(corpus, readFileSync('README.md', 'utf8').slice(0, 3500) + '\n' + EXTRA.join('\n') + '\n');

const LLAMA3_PATTERN = "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| ?"
  + "[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";

function trained(model, setup) {
  const t = new tk.Tokenizer(model);
  setup(t);
  t.train([corpus]);
  return t;
}

/** The tokenizer's JSON, changed by edit, loaded again (the npm binding has no setter for some components). */
function edited(t, edit) {
  const tmp = '/tmp/athanor-tokenizer-tmp.json';
  t.save(tmp, false);
  const j = JSON.parse(readFileSync(tmp, 'utf8'));
  edit(j);
  return tk.Tokenizer.fromString(JSON.stringify(j));
}

const BYTE_LEVEL_DECODER = { type: 'ByteLevel', add_prefix_space: true, trim_offsets: true, use_regex: true };

/** Byte-level as GPT-2 has it: the ByteLevel decoder, and every one of the 256 byte symbols in the vocabulary. */
function byteLevel(j) {
  j.decoder = BYTE_LEVEL_DECODER;
  for (const c of tk.byteLevelAlphabet()) if (!(c in j.model.vocab)) j.model.vocab[c] = Object.keys(j.model.vocab).length;
}

function save(t, name) {
  const p = join(OUT, name + '.json');
  t.save(p, false);
  return tk.Tokenizer.fromFile(p);
}

/** Llama 2's layout around a trained piece vocabulary: <unk> <s> </s> <0x00>..<0xFF>, then the pieces. */
function sentencePieceStyle(base, edit) {
  return edited(base, j => {
    const pieces = Object.entries(j.model.vocab).sort((a, b) => a[1] - b[1]).map(e => e[0]);
    const vocab = { '<unk>': 0, '<s>': 1, '</s>': 2 };
    for (let b = 0; b < 256; b++) vocab['<0x' + b.toString(16).toUpperCase().padStart(2, '0') + '>'] = 3 + b;
    for (const p of pieces) if (!(p in vocab)) vocab[p] = Object.keys(vocab).length;
    j.model.vocab = vocab;
    j.model.unk_token = '<unk>';
    j.model.byte_fallback = true;
    j.model.fuse_unk = true;
    j.added_tokens = ['<unk>', '<s>', '</s>'].map((c, i) => ({ id: i, content: c, single_word: false, lstrip: false,
      rstrip: false, normalized: false, special: true }));
    edit(j);
  });
}

const variants = {};

// GPT-2 / RoBERTa: byte-level BPE; one special and one plain added token (the plain one strips white space).
variants['bytelevel-bpe'] = () => {
  const t = edited(trained(tk.BPE.empty(), t => t.setPreTokenizer(tk.byteLevelPreTokenizer(false, true))),
    byteLevel);
  t.addAddedTokens([new tk.AddedToken('<|endoftext|>', true), new tk.AddedToken('<|tool|>', false,
    { leftStrip: true, rightStrip: true })]);
  return t;
};

// Llama 3 / Qwen: NFC, a Split on Llama 3's pattern, then ByteLevel without its own regex.
variants['llama3-style'] = () => {
  const t = edited(trained(tk.BPE.empty(), t => {
    t.setNormalizer(tk.nfcNormalizer());
    t.setPreTokenizer(tk.sequencePreTokenizer([tk.splitPreTokenizer(LLAMA3_PATTERN, 'isolated', false),
      tk.byteLevelPreTokenizer(false, false)]));
  }), byteLevel);
  t.addAddedTokens([new tk.AddedToken('<|begin_of_text|>', true), new tk.AddedToken('<|end_of_text|>', true)]);
  return t;
};

// Pieces as SentencePiece makes them ("▁word": no merges across word starts), for the next two variants.
const pieces = () => trained(tk.BPE.empty(), t => t.setPreTokenizer(tk.metaspacePreTokenizer('\u2581', 'always', true)));

// Llama 2 / TinyLlama: Prepend + Replace normalizer, no pre-tokenizer, byte fallback, Strip decoder.
variants['llama2-style'] = () => sentencePieceStyle(pieces(), j => {
  j.normalizer = { type: 'Sequence', normalizers: [{ type: 'Prepend', prepend: '\u2581' },
    { type: 'Replace', pattern: { String: ' ' }, content: '\u2581' }] };
  j.pre_tokenizer = null;
  j.decoder = { type: 'Sequence', decoders: [
    { type: 'Replace', pattern: { String: '\u2581' }, content: ' ' },
    { type: 'ByteFallback' }, { type: 'Fuse' }, { type: 'Strip', content: ' ', start: 1, stop: 0 }] };
});

// Mistral / newer Llama-2-like files: no normalizer, a Metaspace pre-tokenizer (prepend "first", no split).
variants['metaspace-bpe'] = () => sentencePieceStyle(pieces(), j => {
  j.pre_tokenizer = { type: 'Metaspace', replacement: '\u2581', prepend_scheme: 'first', split: false };
  j.decoder = { type: 'Sequence', decoders: [
    { type: 'ByteFallback' }, { type: 'Metaspace', replacement: '\u2581', prepend_scheme: 'first', split: false }] };
});

// T5 / ALBERT: a Unigram model, NMT + NFKC normalizers, Metaspace.
variants['unigram'] = () => edited(trained(tk.Unigram.empty(), t => {
  t.setNormalizer(tk.sequenceNormalizer([tk.nmt(), tk.nfkcNormalizer()]));
  t.setPreTokenizer(tk.metaspacePreTokenizer());
  t.setDecoder(tk.metaspaceDecoder());
}), j => {
  // <unk> and </s> first, as in T5's and ALBERT's files (a Unigram vocabulary is a list: ids are positions)
  j.model.vocab = [['<unk>', 0.0], ['</s>', 0.0], ...j.model.vocab];
  j.model.unk_id = 0;
  j.added_tokens = ['<unk>', '</s>'].map((c, i) => ({ id: i, content: c, single_word: false, lstrip: false,
    rstrip: false, normalized: false, special: true }));
});

// BERT: BertNormalizer (lower case, accents stripped), BertPreTokenizer, WordPiece, the WordPiece decoder.
variants['wordpiece'] = () => edited(trained(tk.WordPiece.empty(), t => {
  t.setNormalizer(tk.bertNormalizer({ lowercase: true }));
  t.setPreTokenizer(tk.bertPreTokenizer());
  t.setDecoder(tk.wordPieceDecoder('##', true));
}), j => {
  const special = ['[UNK]', '[CLS]', '[SEP]', '[PAD]', '[MASK]'];
  const vocab = {};
  special.forEach((c, i) => { vocab[c] = i; });
  for (const [w, id] of Object.entries(j.model.vocab)) vocab[w] = id + special.length;
  j.model.vocab = vocab;
  j.model.unk_token = '[UNK]';
  j.added_tokens = special.map((c, i) => ({ id: i, content: c, single_word: false, lstrip: false,
    rstrip: false, normalized: false, special: true }));
});

// Texts: awkward fixed ones, then seeded random mixtures of scripts, emoji, marks and white-space runs.
const TEXTS = ['', ' ', '  ', '\n', '\r\n\r\n', '\t \t', 'a', 'Hello world', ' leading', 'trailing ',
  'multiple   spaces\n\n\nand lines', '👍🏽 family: 👨‍👩‍👧‍👦 flag: 🇩🇪', 'e\u0301\u0302 n\u0303 a\u0308\u0304',
  '日本語のテキストと中文', '한국어 텍스트', 'Ελληνικά και русский', '<|endoftext|>', '<s></s><unk>',
  'x<|endoftext|>y', 'a <|tool|> b', 'a<|tool|>b', '<|begin_of_text|>Hi', '[CLS] Hello [SEP]', 'x'.repeat(300),
  ' '.repeat(40) + 'y', '1234567890 3.14159 -42', "don't can't it's WE'LL I'M", '\u0000\u0001\u007f\u0080\u00ff',
  '𝕳𝖊𝖑𝖑𝖔 𝒲ℴ𝓇𝓁𝒹', '\u3000\u00a0\u2028\u2029\u200b', 'tab\tsep\tvalues', 'The tokenizer of the model in dir.',
  'public static void main(String[] args) { System.out.println("hi"); }', 'Ünïcödé naïve café ﬁ ½'];
let seed = 12345;
const rnd = n => { seed = (seed * 1103515245 + 12345) % 2147483648; return seed % n; };
const RANGES = [[0x20, 0x7e], [0xa0, 0xff], [0x400, 0x4ff], [0x600, 0x6ff], [0x900, 0x97f], [0x4e00, 0x9fff],
  [0xac00, 0xd7a3], [0x1f300, 0x1faff], [0x300, 0x36f], [0x1d400, 0x1d7ff], [0x3040, 0x30ff]];
const SPACES = [0x20, 0x20, 0x20, 0x09, 0x0a, 0x0d, 0xa0, 0x3000, 0x2028, 0x2009, 0x85];
const WORDS = ['the', 'model', 'tokenizer', 'Java', 'GPU', 'train', 'de', 'и', 'の', 'json', 'BPE'];
for (let i = 0; i < 40; i++) {
  let s = '';
  const n = 1 + rnd(80);
  const style = rnd(3);
  for (let k = 0; k < n; k++) {
    const c = rnd(10);
    if (c < 2) s += String.fromCodePoint(SPACES[rnd(SPACES.length)]).repeat(1 + rnd(3));
    else if (style === 0 && c < 8) s += WORDS[rnd(WORDS.length)];
    else { const r = RANGES[rnd(RANGES.length)]; s += String.fromCodePoint(r[0] + rnd(r[1] - r[0] + 1)); }
  }
  TEXTS.push(s);
}

for (const [name, make] of Object.entries(variants)) {
  const t = save(make(), name);
  const cases = [];
  for (const text of TEXTS) {
    const ids = (await t.encode(text, null, { addSpecialTokens: false })).getIds();
    cases.push({ text, ids, decoded: await t.decode(ids, false) });
  }
  writeFileSync(join(OUT, name + '.expected.json'),
    JSON.stringify({ library: 'tokenizers (npm) ' + version, cases }) + '\n');
  console.log(name, t.getVocabSize(true), 'tokens,', cases.length, 'cases');
}
