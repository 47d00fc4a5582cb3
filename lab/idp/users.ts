/**
 * The lab's demo people. Passwords are printed by `npm run lab` on purpose: this is a local
 * development identity provider and never part of a packaged build.
 */
export interface LabUser {
  username: string;
  password: string;
  sub: string;
  name: string;
  email: string;
  /** Key into the policy file's `rights`: what this person may have delegated. */
  role: 'regular' | 'narrow' | 'admin';
}

export const LAB_USERS: readonly LabUser[] = [
  {
    username: 'alice',
    password: 'alice-lab-pw',
    sub: 'a1b2c3d4-0000-4000-8000-00000000a11c',
    name: 'Alice Lab',
    email: 'alice@lab.countersign.test',
    role: 'regular',
  },
  {
    username: 'bob',
    password: 'bob-lab-pw',
    sub: 'b0b0b0b0-0000-4000-8000-000000000b0b',
    name: 'Bob Lab',
    email: 'bob@lab.countersign.test',
    role: 'narrow',
  },
  {
    username: 'admin',
    password: 'admin-lab-pw',
    sub: 'ad000000-0000-4000-8000-0000000000ad',
    name: 'Lab Administrator',
    email: 'admin@lab.countersign.test',
    role: 'admin',
  },
];

export const ACR_PASSWORD = 'urn:countersign:acr:pwd';
export const ACR_MFA = 'urn:countersign:acr:mfa';
/** The lab's one-time code, shown on the login page: the second factor is pretend, the flow is not. */
export const LAB_ONE_TIME_CODE = '246810';

export function userBySub(sub: string): LabUser | undefined {
  return LAB_USERS.find((u) => u.sub === sub);
}
