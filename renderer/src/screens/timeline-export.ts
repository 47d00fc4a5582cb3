/** Exporting the timeline's records as JSON Lines or CSV, by whichever route the host offers. */
import type { AuditFilter } from '../../../common/contract.ts';
import { plural } from '../components/common.tsx';
import type { RendererTransport } from '../transport/web-transport.ts';

function download(filename: string, blob: Blob): void {
  const url = URL.createObjectURL(blob);
  const a = document.createElement('a');
  a.href = url;
  a.download = filename;
  a.rel = 'noopener';
  document.body.append(a);
  a.click();
  a.remove();
  setTimeout(() => URL.revokeObjectURL(url), 10_000);
}

/**
 * The desktop app saves through its native dialog (the core writes the file); the web host streams a
 * download; otherwise the export is taken whole through the contract. Returns what to tell the person.
 */
export async function exportAs(
  transport: RendererTransport,
  format: 'jsonl' | 'csv',
  filter: AuditFilter,
): Promise<string | null> {
  if (transport.saveExport) {
    const saved = await transport.saveExport({ format, filter });
    return saved.saved ? `Exported ${plural(saved.records, 'record')} to ${saved.path}` : null;
  }
  const streamed = await transport.exportFile?.({ format, filter });
  if (streamed) {
    download(streamed.filename, streamed.blob);
    return null;
  }
  const r = await transport.call('audit.export', { format, filter });
  download(r.filename, new Blob([r.content], { type: r.mediaType }));
  return null;
}
