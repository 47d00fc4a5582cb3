export { createBroker, errorResult, type Broker, type BrokerOptions } from './broker.ts';
export { createCredentials, type Credentials, type CredentialsOptions } from './credentials.ts';
export { tierOneOnlyApprover, type Approver, type ApprovalContext } from './approver.ts';
export type { ApprovalDecision } from '../approvals/decision.ts';
