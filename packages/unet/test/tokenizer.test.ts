// CLIP BPE tokenizer against ids derived by hand from test/fixtures/clip_tokenizer (vocab.json, merges.txt).
// Merge ranks (line order after the header): 0 'p h', 1 'ph o', 2 't o</w>', 3 'pho to</w>', 4 'o f</w>',
// 5 'c a', 6 'ca t</w>', 7 'g r', 8 'gr a', 9 'gra ph', 10 'e d</w>', 11 "' s</w>", 12 'i t</w>'.
// BPE repeatedly merges the adjacent pair of LOWEST rank (all its occurrences), until no pair has a rank.
import { fileURLToPath } from 'node:url';
import { CLIPTokenizer, basicClean, bytesToUnicode } from '@cnx/unet';
import { describe, expect, it } from 'vitest';

const dir = fileURLToPath(new URL('./fixtures/clip_tokenizer', import.meta.url));
const BOS = 40, EOS = 41;

describe('CLIPTokenizer', () => {
  const tok = CLIPTokenizer.fromFolder(dir);

  it('applies merges by rank', () => {
    // "photo": p h o t o</w> -> (p,h)#0 -> ph o t o</w> -> (ph,o)#1 -> pho t o</w> -> (t,o</w>)#2
    //   -> pho to</w> -> (pho,to</w>)#3 -> photo</w> = 24.
    // "photographed": p h o t o g r a p h e d</w>; (t,o) is not a merge (only t o</w> is).
    //   #0 merges BOTH p h pairs -> ph o t o g r a ph e d</w>; #1 -> pho t o g r a ph e d</w>;
    //   #7 -> ... gr a ...; #8 -> gra; #9 gra+ph -> graph; #10 e d</w> -> ed</w>;
    //   left: pho t o graph ed</w> (no ranked pair) = 22 5 4 30 31.
    expect(tok.tokenize('photographed')).toEqual(['pho', 't', 'o', 'graph', 'ed</w>']);
    // "a" is one symbol a</w> (0); "of": o f</w> #4 -> of</w> (25); "cat": c a #5, ca t</w> #6 -> 27;
    // the regex splits "cat," into "cat" and "," (",</w>" = 11) and "!" gives "!</w>" = 12.
    expect(tok.encodeTokens('a photo of a cat, photographed!')).toEqual([0, 24, 25, 0, 27, 11, 22, 5, 4, 30, 31, 12]);
  });

  it('lower-cases and collapses whitespace', () => {
    expect(basicClean('  A   PHOTO\tOf \n')).toBe('a photo of');
    expect(tok.encodeTokens('  A   PHOTO\tOf \n')).toEqual([0, 24, 25]);
  });

  it('splits contractions and single digits', () => {
    // "it's 2024": letters "it" -> i t</w> #12 -> it</w> (34); "'s" -> ' s</w> #11 -> 's</w> (32);
    // [\p{N}] takes one digit at a time: 2</w> 0</w> 2</w> 4</w> = 18 19 18 20.
    expect(tok.encodeTokens("it's 2024")).toEqual([34, 32, 18, 19, 18, 20]);
  });

  it('maps UTF-8 bytes to printable characters', () => {
    // "é" = bytes C3 A9; bytes_to_unicode keeps printable latin-1 bytes: C3 -> 'Ã' (35), A9 -> '©' + '</w>' (36).
    const table = bytesToUnicode();
    expect(table[0xc3]).toBe('\u00c3');
    expect(table[0x20]).toBe('\u0120'); // space is byte 32, the 33rd non-printable byte -> chr(256 + 32)
    expect(tok.encodeTokens('é')).toEqual([35, 36]);
    // "z</w>" is not in the vocabulary -> unk_token (<|endoftext|>, 41).
    expect(tok.encodeTokens('z')).toEqual([EOS]);
  });

  it('adds bos/eos, pads with the pad token and truncates to 77', () => {
    const ids = tok.encode('a cat');
    expect(ids.length).toBe(77);
    expect(ids.slice(0, 5)).toEqual([BOS, 0, 27, EOS, EOS]);
    expect(ids.slice(4).every((i) => i === EOS)).toBe(true);
    // 100 words -> 75 kept between bos and eos.
    const long = tok.encode(Array(100).fill('a').join(' '));
    expect(long).toEqual([BOS, ...Array(75).fill(0), EOS]);
    // A special token inside the prompt stays one token.
    expect(tok.encodeTokens('a<|endoftext|>cat')).toEqual([0, EOS, 27]);
    expect(tok.encode('a', { padding: 'none' })).toEqual([BOS, 0, EOS]);
  });

  it('takes the pad token and length from the options (SD2 pads with "!")', () => {
    const vocab = new Map([['!', 37], ['a</w>', 0], ['<|startoftext|>', BOS], ['<|endoftext|>', EOS]]);
    const t = new CLIPTokenizer(vocab, [], { padToken: '!', maxLength: 6 });
    expect(t.encode('a')).toEqual([BOS, 0, EOS, 37, 37, 37]);
    expect(() => new CLIPTokenizer(vocab, [], { padToken: '<pad>' })).toThrow(/pad_token '<pad>' is not in the vocabulary/);
  });
});
