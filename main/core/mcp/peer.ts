/**
 * Identifies the process at the other end of an accepted Unix socket, where the OS allows it. Node has
 * no SO_PEERCRED, and /proc/net/unix does not name a connection's peer, so on Linux this asks the
 * kernel's sock_diag through `ss -xp` (iproute2): our end's inode (from /proc/self/fd) gives the peer's
 * inode, and the peer's inode gives its pid; the uid is the owner of /proc/<pid>. Elsewhere, or when
 * `ss` is missing, the peer stays unknown (undefined), never guessed.
 */
import { execFile } from 'node:child_process';
import { readlink, stat } from 'node:fs/promises';
import type { Socket } from 'node:net';

export interface PeerIdentity {
  pid?: number;
  uid?: number;
}

/** `ss` reads every process's descriptors; under load it can take seconds. A call waits for it at most 500 ms (mcp-session.ts). */
export async function peerOf(socket: Socket, timeoutMs = 5000): Promise<PeerIdentity> {
  if (process.platform !== 'linux') return {};
  try {
    const fd = (socket as unknown as { _handle?: { fd?: number } })._handle?.fd;
    if (typeof fd !== 'number' || fd < 0) return {};
    const link = await readlink(`/proc/self/fd/${fd}`);
    const local = /^socket:\[(\d+)\]$/.exec(link)?.[1];
    if (!local) return {};
    const table = await ssTable(timeoutMs);
    const peerInode = table.get(local)?.peer;
    if (!peerInode) return {};
    const pid = table.get(peerInode)?.pid;
    if (pid === undefined) return {};
    const uid = (await stat(`/proc/${pid}`)).uid;
    return { pid, uid };
  } catch {
    return {};
  }
}

interface SsRow {
  peer?: string;
  pid?: number;
}

function ssTable(timeoutMs: number): Promise<Map<string, SsRow>> {
  return new Promise((resolve) => {
    execFile('ss', ['-xpnH'], { timeout: timeoutMs, maxBuffer: 16 * 1024 * 1024 }, (error, stdout) => {
      const table = new Map<string, SsRow>();
      if (error) return resolve(table);
      for (const line of stdout.split('\n')) {
        // u_str ESTAB 0 0 <local addr> <local inode> <peer addr> <peer inode> users:(("node",pid=12,fd=3))
        const m = /^\S+\s+\S+\s+\d+\s+\d+\s+\S+\s+(\d+)\s+\S+\s+(\d+)(?:\s+users:\(\("[^"]*",pid=(\d+))?/.exec(line);
        if (!m) continue;
        table.set(m[1]!, { peer: m[2], pid: m[3] !== undefined ? Number(m[3]) : undefined });
      }
      resolve(table);
    });
  });
}
