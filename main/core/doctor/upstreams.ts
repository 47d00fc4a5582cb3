/** Each upstream MCP server as the doctor checks it, before any sign-in. */
import type { Finding } from './types.ts';

/** An OBO upstream publishes RFC 9728 metadata naming this IdP; an API-key upstream answers at all. */
export async function upstreamCheck(
  name: string,
  url: string,
  auth: 'obo' | 'api-key',
  issuer: string,
  timeoutMs: number,
): Promise<Finding> {
  const u = new URL(url);
  try {
    if (auth === 'obo') {
      const res = await fetch(
        `${u.origin}/.well-known/oauth-protected-resource${u.pathname === '/' ? '' : u.pathname}`,
        { signal: AbortSignal.timeout(timeoutMs), redirect: 'error' },
      );
      const meta = (await res.json().catch(() => ({}))) as { authorization_servers?: unknown };
      const servers = Array.isArray(meta.authorization_servers) ? meta.authorization_servers.map(String) : [];
      if (res.status === 200 && servers.includes(issuer))
        return {
          party: 'upstream',
          check: name,
          status: 'ok',
          says: `${name} (${url}) names your identity provider in its protected-resource metadata.`,
        };
      return {
        party: 'upstream',
        check: name,
        status: 'fail',
        says: `${name} (${url}) does not name ${issuer} among its authorization servers (RFC 9728 metadata, HTTP ${res.status}).`,
        fix: 'Check the upstream URL, or configure the upstream to trust your identity provider.',
      };
    }
    const res = await fetch(url, {
      method: 'GET',
      signal: AbortSignal.timeout(timeoutMs),
      redirect: 'error',
    });
    await res.body?.cancel();
    return {
      party: 'upstream',
      check: name,
      status: 'ok',
      says: `${name} (${url}) answers (HTTP ${res.status}); its key comes from Vault per call.`,
    };
  } catch {
    return {
      party: 'upstream',
      check: name,
      status: 'fail',
      says: `${name} (${url}) did not answer.`,
      fix: 'Check the upstream URL and that the server is running.',
    };
  }
}
