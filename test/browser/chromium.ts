// Headless Chromium for the browser tests: Debian's /usr/bin/chromium (or CNX_CHROMIUM), driven by
// playwright-core (which downloads no browser), with WebGPU enabled; and a static file server on
// 127.0.0.1 for the bundled pages. The flags: --enable-unsafe-webgpu (WebGPU on Linux), --no-sandbox when
// running as root (Chromium refuses to start otherwise), and the background-networking flags without
// which Chromium's own connections are refused by a closed network at every start. Without a GPU,
// Chromium's WebGPU runs on SwiftShader (a fallback adapter), which chromium-common ships.

import { existsSync, readFileSync, statSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import { extname, join, normalize, sep } from 'node:path';
import type { Browser } from 'playwright-core';

export const REQUIRE_BROWSER = process.env.CNX_REQUIRE_BROWSER === '1';

/** The Chromium executable, or why there is none. */
export function findChromium(): { path?: string; why?: string } {
  const candidates = [process.env.CNX_CHROMIUM, '/usr/bin/chromium', '/usr/bin/chromium-browser'].filter((p): p is string => !!p);
  const path = candidates.find((p) => existsSync(p));
  return path ? { path } : { why: `no Chromium at ${candidates.join(', ')} (Debian: apt-get install chromium; or set CNX_CHROMIUM)` };
}

export async function launchChromium(executablePath: string): Promise<Browser> {
  const { chromium } = await import('playwright-core');
  const root = typeof process.getuid === 'function' && process.getuid() === 0;
  return chromium.launch({
    executablePath,
    headless: true,
    args: [
      '--enable-unsafe-webgpu', ...(root ? ['--no-sandbox'] : []),
      '--disable-background-networking', '--disable-component-update', '--disable-sync', '--disable-quic', '--no-first-run',
      '--disable-default-apps', '--disable-extensions',
    ],
  });
}

const TYPES: Record<string, string> = {
  '.html': 'text/html; charset=utf-8', '.js': 'text/javascript; charset=utf-8', '.css': 'text/css', '.json': 'application/json',
  '.map': 'application/json', '.png': 'image/png', '.safetensors': 'application/octet-stream', '.txt': 'text/plain',
};

/** Serve `root` (files only, no listing) on 127.0.0.1, a free port; returns the base URL and the server. */
export async function serveFolder(root: string): Promise<{ url: string; server: Server }> {
  const server = createServer((req, res) => {
    const rel = decodeURIComponent(new URL(req.url ?? '/', 'http://x').pathname).replace(/^\/+/, '') || 'index.html';
    const file = normalize(join(root, rel));
    if (!file.startsWith(root + sep) || !existsSync(file) || !statSync(file).isFile()) {
      res.writeHead(404).end('not found');
      return;
    }
    res.writeHead(200, { 'content-type': TYPES[extname(file)] ?? 'application/octet-stream', 'cache-control': 'no-store' });
    res.end(readFileSync(file));
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const addr = server.address();
  if (!addr || typeof addr === 'string') throw new Error('serveFolder: no port');
  return { url: `http://127.0.0.1:${addr.port}/`, server };
}
