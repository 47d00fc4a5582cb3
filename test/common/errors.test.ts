import { describe, expect, it } from 'vitest';
import { AppError, ERROR_CODES, fromWire, isErrorCode } from '../../common/errors.ts';

describe('AppError', () => {
  it('carries a stable code and a message for a person', () => {
    const e = new AppError('VAULT_SEALED', 'Vault is sealed: ask your Vault operator to unseal it.');
    expect(e.code).toBe('VAULT_SEALED');
    expect(e.toWire()).toEqual({ code: 'VAULT_SEALED', message: 'Vault is sealed: ask your Vault operator to unseal it.' });
  });

  it('does not copy the text of a foreign error, which may carry a secret', () => {
    const foreign = new Error('connect failed: postgres://app:hunter2@db/clinic');
    const e = AppError.from(foreign, 'DB_UNAVAILABLE', 'The database did not answer.');
    expect(e.message).toBe('The database did not answer.');
    expect(JSON.stringify(e.toWire())).not.toContain('hunter2');
    expect(e.cause).toBe(foreign);
  });

  it('turns an AbortError into CANCELLED', () => {
    const abort = new DOMException('aborted', 'AbortError');
    expect(AppError.from(abort).code).toBe('CANCELLED');
  });

  it('keeps an AppError as it is', () => {
    const e = new AppError('IDP_DENIED', 'denied');
    expect(AppError.from(e)).toBe(e);
  });

  it('parses only well-formed errors that came over a boundary', () => {
    expect(fromWire({ code: 'APPROVAL_DENIED', message: 'You denied query.' }).code).toBe('APPROVAL_DENIED');
    expect(fromWire({ code: 'NOT_A_CODE', message: 'x' }).code).toBe('INTERNAL');
    expect(fromWire('garbage').code).toBe('INTERNAL');
    expect(fromWire({ code: 'IDP_DENIED', message: 42 }).code).toBe('INTERNAL');
  });

  it('has unique codes', () => {
    expect(new Set(ERROR_CODES).size).toBe(ERROR_CODES.length);
    expect(isErrorCode('VAULT_SEALED')).toBe(true);
    expect(isErrorCode('vault_sealed')).toBe(false);
  });
});
