/**
 * TLS to PostgreSQL, configured as libpq does (`sslmode`, `sslrootcert`) and turned into `pg`'s
 * options. Off loopback the default is `verify-full`: the per-call credential and every statement
 * travel on this connection, so the server must prove its name. A server that cannot do TLS, or whose
 * certificate does not verify, is a failed connection with the reason, never a plain-text fallback.
 */
import { readFile } from 'node:fs/promises';
import { isIP } from 'node:net';
import type pg from 'pg';
import { AppError } from '../../../../common/errors.ts';

export type SslMode = 'disable' | 'require' | 'verify-ca' | 'verify-full';

export interface PostgresTlsConfig {
  host: string;
  sslmode?: SslMode;
  sslrootcert?: string;
}

/** 127.0.0.0/8, ::1, `localhost`, or a Unix socket directory: traffic that never leaves the host. */
export function isLoopbackHost(host: string): boolean {
  if (host.startsWith('/')) return true;
  const h = host.replace(/^\[|\]$/g, '');
  if (h === 'localhost' || h === '::1') return true;
  return isIP(h) === 4 && h.startsWith('127.');
}

export function effectiveSslMode(config: PostgresTlsConfig): SslMode {
  return config.sslmode ?? (isLoopbackHost(config.host) ? 'disable' : 'verify-full');
}

/** `pg`'s `ssl` option for the configuration; reads the CA file once. */
export async function postgresSsl(config: PostgresTlsConfig): Promise<pg.ClientConfig['ssl']> {
  const mode = effectiveSslMode(config);
  if (mode === 'disable') return false;
  if (mode === 'require') return { rejectUnauthorized: false };
  let ca: string | undefined;
  if (config.sslrootcert) {
    try {
      ca = await readFile(config.sslrootcert, 'utf8');
    } catch (error) {
      throw new AppError('CONFIG_INVALID', `postgres.sslrootcert: ${config.sslrootcert} could not be read.`, { cause: error });
    }
  }
  if (mode === 'verify-ca') {
    if (!ca) throw new AppError('CONFIG_INVALID', 'postgres.sslrootcert is needed with sslmode verify-ca.');
    // The chain is verified; the name is not (libpq's verify-ca).
    return { ca, rejectUnauthorized: true, checkServerIdentity: () => undefined };
  }
  return { ...(ca ? { ca } : {}), rejectUnauthorized: true };
}

/**
 * The reason a connection with TLS required failed before PostgreSQL answered: Node's certificate
 * error code when there is one (`DEPTH_ZERO_SELF_SIGNED_CERT`, `ERR_TLS_CERT_ALTNAME_INVALID`…).
 */
export function tlsConnectFailure(error: unknown): AppError {
  const code = (error as { code?: unknown }).code;
  const why = typeof code === 'string' && /^[A-Z0-9_]{3,64}$/.test(code) ? ` (${code})` : '';
  return new AppError(
    'DB_UNAVAILABLE',
    `The database could not be reached over the TLS connection the configuration requires (postgres.sslmode)${why}: it is down, does not offer TLS, or its certificate did not verify.`,
    { cause: error },
  );
}
