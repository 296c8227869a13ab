// The CLIP BPE tokenizer (transformers CLIPTokenizer, models/clip/tokenization_clip.py, 4.57) reading a
// diffusers `tokenizer/` folder: vocab.json (token -> id), merges.txt (ranked BPE merges after a
// "#version" header line), and tokenizer_config.json / special_tokens_map.json when present.
//
// text -> clean (ftfy-free: the BasicTokenizer fallback CLIPTokenizer uses when ftfy is missing: drop
// control characters, whitespace -> ' ', spaces around CJK, NFC, collapse whitespace, lower-case)
// -> the CLIP regex -> each piece's UTF-8 bytes mapped to printable characters (bytes_to_unicode) -> BPE
// with '</w>' marking the end of a word -> ids (unknown -> unk_token) -> <|startoftext|> ids <|endoftext|>,
// truncated to model_max_length (77) and padded with pad_token (SD1.5: <|endoftext|>; SD2: "!").

import { readFolderText } from './load_model.js';
import { fileText, parseConfigText, type ModelFiles } from './model_files.js';

/** Token ids are below this (CLIP's vocabulary has 49408; the CLIP text config's vocab_size is bounded the same way). */
const MAX_VOCAB = 1_000_000;

const BOS = '<|startoftext|>';
const EOS = '<|endoftext|>';

/** GPT-2/CLIP bytes_to_unicode: every byte -> a printable character (printable latin-1 bytes map to themselves). */
export function bytesToUnicode(): string[] {
  const bs: number[] = [];
  for (let b = 0x21; b <= 0x7e; b++) bs.push(b); // '!'..'~'
  for (let b = 0xa1; b <= 0xac; b++) bs.push(b); // '¡'..'¬'
  for (let b = 0xae; b <= 0xff; b++) bs.push(b); // '®'..'ÿ'
  const table = new Array<string>(256);
  for (const b of bs) table[b] = String.fromCodePoint(b);
  let n = 0;
  for (let b = 0; b < 256; b++) if (table[b] === undefined) table[b] = String.fromCodePoint(256 + n++);
  return table;
}

/** The CLIP pre-tokenisation pattern (tokenization_clip.py), applied to lower-cased text. */
const CLIP_PATTERN = /<\|startoftext\|>|<\|endoftext\|>|'s|'t|'re|'ve|'m|'ll|'d|[\p{L}]+|[\p{N}]|[^\s\p{L}\p{N}]+/gu;

function isCjk(cp: number): boolean {
  // transformers BasicTokenizer._is_chinese_char: the CJK Unified Ideographs blocks.
  return (cp >= 0x4e00 && cp <= 0x9fff) || (cp >= 0x3400 && cp <= 0x4dbf) || (cp >= 0x20000 && cp <= 0x2a6df) ||
    (cp >= 0x2a700 && cp <= 0x2b73f) || (cp >= 0x2b740 && cp <= 0x2b81f) || (cp >= 0x2b820 && cp <= 0x2ceaf) ||
    (cp >= 0xf900 && cp <= 0xfaff) || (cp >= 0x2f800 && cp <= 0x2fa1f);
}

/**
 * CLIPTokenizer's text normalisation without ftfy: BasicTokenizer(do_lower_case=True, strip_accents=False,
 * do_split_on_punc=False).tokenize joined by spaces.
 */
export function basicClean(text: string): string {
  let out = '';
  for (const ch of text.normalize('NFC')) {
    const cp = ch.codePointAt(0)!;
    if (cp === 0 || cp === 0xfffd) continue;
    if (ch === '\t' || ch === '\n' || ch === '\r' || /\p{Zs}/u.test(ch)) { out += ' '; continue; }
    if (/\p{C}/u.test(ch)) continue; // control / format characters are dropped
    out += isCjk(cp) ? ` ${ch} ` : ch;
  }
  return out.split(/\s+/).filter((w) => w.length > 0).map((w) => w.toLowerCase()).join(' ');
}

export interface CLIPTokenizerOptions {
  /** Sequence length after bos/eos (tokenizer_config model_max_length; 77 for SD). */
  maxLength?: number;
  padToken?: string;
  bosToken?: string;
  eosToken?: string;
  unkToken?: string;
}

export interface EncodeOptions {
  /** 'max_length' (SD pipelines) pads to maxLength; 'none' leaves each row at its own length. */
  padding?: 'max_length' | 'none';
  /** Cut to maxLength keeping bos and eos (default true). */
  truncation?: boolean;
}

export class CLIPTokenizer {
  readonly maxLength: number;
  readonly bosId: number;
  readonly eosId: number;
  readonly padId: number;
  readonly unkId: number;
  private readonly ranks = new Map<string, number>();
  private readonly cache = new Map<string, string[]>();
  private readonly byteEncoder = bytesToUnicode();

  /** vocab: token -> id (vocab.json); merges: "a b" lines in rank order (merges.txt without its header). */
  constructor(private readonly vocab: ReadonlyMap<string, number>, merges: readonly string[], opts: CLIPTokenizerOptions = {}) {
    merges.forEach((m, i) => {
      const parts = m.trim().split(/\s+/);
      if (parts.length !== 2) throw new Error(`CLIPTokenizer: merge ${i + 1} '${m.length > 60 ? `${m.slice(0, 57)}...` : m}' is not two symbols`);
      const key = `${parts[0]} ${parts[1]}`;
      if (!this.ranks.has(key)) this.ranks.set(key, i);
    });
    const id = (what: string, tok: string): number => {
      const v = vocab.get(tok);
      if (v === undefined) throw new Error(`CLIPTokenizer: ${what} '${tok.length > 60 ? `${tok.slice(0, 57)}...` : tok}' is not in the vocabulary`);
      return v;
    };
    this.maxLength = opts.maxLength ?? 77;
    this.bosId = id('bos_token', opts.bosToken ?? BOS);
    this.eosId = id('eos_token', opts.eosToken ?? EOS);
    this.unkId = id('unk_token', opts.unkToken ?? EOS);
    this.padId = id('pad_token', opts.padToken ?? EOS);
    // Special tokens are never split (transformers keeps them as added tokens).
    this.cache.set(BOS, [BOS]);
    this.cache.set(EOS, [EOS]);
  }

  /**
   * A diffusers `tokenizer/` folder: vocab.json + merges.txt, with bos/eos/unk/pad tokens and
   * model_max_length from tokenizer_config.json (or special_tokens_map.json) when present.
   */
  static fromFolder(dir: string): CLIPTokenizer {
    const files: Record<string, string> = {};
    for (const name of ['vocab.json', 'merges.txt', 'special_tokens_map.json', 'tokenizer_config.json']) {
      const text = readFolderText(dir, name, 'CLIPTokenizer.fromFolder');
      if (text !== undefined) files[name] = text;
      else if (name === 'vocab.json' || name === 'merges.txt') throw new Error(`CLIPTokenizer.fromFolder: ${dir} has no ${name}`);
    }
    return CLIPTokenizer.fromFiles(files, dir.endsWith('/') ? dir : `${dir}/`);
  }

  /**
   * The same from the folder's files in memory (vocab.json, merges.txt, and the optional configs).
   * `where` prefixes file names in errors (fromFolder passes the folder).
   */
  static fromFiles(files: ModelFiles, where = ''): CLIPTokenizer {
    const read = (name: string): string => fileText(files, name, 'CLIPTokenizer.fromFiles');
    const vocabJson = parseConfigText(read('vocab.json'), `${where}vocab.json`);
    for (const [token, id] of Object.entries(vocabJson)) {
      if (typeof id !== 'number' || !Number.isInteger(id) || id < 0 || id >= MAX_VOCAB) {
        throw new Error(`${where}vocab.json: the id of token ${JSON.stringify(token.slice(0, 40))} must be an integer in [0, ${MAX_VOCAB}), found ${JSON.stringify(id)?.slice(0, 40)}`);
      }
    }
    const vocab = new Map(Object.entries(vocabJson as Record<string, number>));
    const lines = read('merges.txt').split('\n').map((l) => l.replace(/\r$/, '')).filter((l) => l.trim().length > 0);
    // transformers drops the first line ("#version: 0.2") and keeps at most 49152 - 256 - 2 merges.
    const merges = (lines[0]?.startsWith('#') ? lines.slice(1) : lines).slice(0, 49152 - 256 - 2);
    const opts: CLIPTokenizerOptions = {};
    const tokenOf = (v: unknown): string | undefined =>
      typeof v === 'string' ? v : v && typeof v === 'object' && typeof (v as { content?: unknown }).content === 'string' ? (v as { content: string }).content : undefined;
    for (const name of ['special_tokens_map.json', 'tokenizer_config.json']) {
      const text = fileText(files, name, 'CLIPTokenizer.fromFiles', true);
      if (text === undefined) continue;
      const cfg = parseConfigText(text, `${where}${name}`);
      opts.bosToken = tokenOf(cfg.bos_token) ?? opts.bosToken;
      opts.eosToken = tokenOf(cfg.eos_token) ?? opts.eosToken;
      opts.unkToken = tokenOf(cfg.unk_token) ?? opts.unkToken;
      opts.padToken = tokenOf(cfg.pad_token) ?? opts.padToken;
      // Some configs store a huge sentinel (1e30) for "no limit"; CLIP's position table is the real bound.
      if (typeof cfg.model_max_length === 'number' && cfg.model_max_length < 1e6) opts.maxLength = cfg.model_max_length;
    }
    try {
      return new CLIPTokenizer(vocab, merges, opts);
    } catch (e) {
      // Name the file the bad merge or special token came from.
      const m = (e as Error).message;
      throw new Error(`${where}${m.includes(' merge ') ? 'merges.txt' : 'vocab.json (special tokens)'}: ${m}`);
    }
  }

  /** BPE of one pre-token (already byte-mapped): the symbols after every applicable merge, lowest rank first. */
  private bpe(token: string): string[] {
    const cached = this.cache.get(token);
    if (cached) return cached;
    const chars = [...token];
    let word = [...chars.slice(0, -1), chars[chars.length - 1]! + '</w>'];
    while (word.length > 1) {
      let best: string | undefined, bestRank = Infinity;
      for (let i = 0; i < word.length - 1; i++) {
        const r = this.ranks.get(`${word[i]} ${word[i + 1]}`);
        if (r !== undefined && r < bestRank) { bestRank = r; best = `${word[i]} ${word[i + 1]}`; }
      }
      if (best === undefined) break;
      const [first, second] = best.split(' ') as [string, string];
      const next: string[] = [];
      for (let i = 0; i < word.length;) {
        if (word[i] === first && i < word.length - 1 && word[i + 1] === second) { next.push(first + second); i += 2; }
        else next.push(word[i++]!);
      }
      word = next;
    }
    this.cache.set(token, word);
    return word;
  }

  /** Text -> BPE token strings (no bos/eos). */
  tokenize(text: string): string[] {
    const out: string[] = [];
    const encoder = new TextEncoder();
    for (const m of basicClean(text).matchAll(CLIP_PATTERN)) {
      const piece = m[0];
      const mapped = piece === BOS || piece === EOS ? piece : Array.from(encoder.encode(piece), (b) => this.byteEncoder[b]!).join('');
      out.push(...this.bpe(mapped));
    }
    return out;
  }

  /** Text -> ids without bos/eos (unknown tokens -> unk). */
  encodeTokens(text: string): number[] {
    return this.tokenize(text).map((t) => this.vocab.get(t) ?? this.unkId);
  }

  /** One prompt -> [bos, ...ids, eos], truncated to maxLength and padded with pad_token (SD's tokenizer call). */
  encode(text: string, opts: EncodeOptions = {}): number[] {
    let ids = this.encodeTokens(text);
    if (opts.truncation ?? true) ids = ids.slice(0, Math.max(0, this.maxLength - 2));
    const row = [this.bosId, ...ids, this.eosId];
    if ((opts.padding ?? 'max_length') === 'max_length') while (row.length < this.maxLength) row.push(this.padId);
    return row;
  }

  /** Prompts -> ids [B][maxLength]. */
  encodeBatch(texts: readonly string[], opts: EncodeOptions = {}): number[][] {
    return texts.map((t) => this.encode(t, opts));
  }
}
