/**
 * A page of the timeline as the `audit.page` channel answers it. With `fields: 'row'` each record is
 * left without its arguments and authorization details, which the client chose and which may take
 * 256 KiB each; `audit.get` gives the record whole.
 */
import type { ContractHandlers } from '../../../common/contract.ts';
import type { AuditStore } from './store.ts';

type PageRequest = Parameters<ContractHandlers['audit.page']>[0];
type Page = Awaited<ReturnType<ContractHandlers['audit.page']>>;

export function auditPage(audit: Pick<AuditStore, 'page'>, request: PageRequest): Page {
  const page = audit.page(request);
  const records =
    request.fields === 'row'
      ? page.records.map(({ args: _args, authorization_details: _rar, ...row }) => row)
      : page.records;
  return {
    records,
    total: page.total ?? page.records.length,
    total_capped: page.total_capped ?? false,
    head: page.head,
  };
}
