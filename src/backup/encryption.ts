import fsp from 'node:fs/promises';
import type { LitekeepConfig } from '../config/index.js';
import type { Encryption } from '../naming.js';
import { validateRecipients } from '../pipeline/index.js';
import { LitekeepError } from '../util/errors.js';

export interface EncryptionChoice {
  kind: Encryption;
  recipients?: string[];
  passphrase?: string;
}

/** Reads a passphrase file's first line; the file should be private to its owner. */
export async function readPassphraseFile(file: string): Promise<string> {
  let text: string;
  try {
    text = await fsp.readFile(file, 'utf8');
  } catch (error) {
    throw new LitekeepError(
      `cannot read passphrase file ${file} (${(error as NodeJS.ErrnoException).code}); check encryption.passphraseFile`,
      { exitCode: 2, stage: 'prepare' },
    );
  }
  const passphrase = text.split(/\r?\n/)[0];
  if (!passphrase) {
    throw new LitekeepError(`passphrase file ${file} is empty; put the passphrase on its first line`, {
      exitCode: 2,
      stage: 'prepare',
    });
  }
  return passphrase;
}

/** What the configuration asks for: recipients win over a passphrase; neither means no encryption. */
export async function encryptionSettings(config: LitekeepConfig['encryption']): Promise<EncryptionChoice> {
  if (config.recipients && config.recipients.length > 0) {
    if (config.passphrase || config.passphraseFile) {
      throw new LitekeepError(
        'encryption.recipients and a passphrase are both set; age encrypts to one or the other: keep one of them',
        { exitCode: 2, stage: 'prepare' },
      );
    }
    // Rejects with InvalidRecipientError (exit 2) naming the bad recipient: at start, not at 03:00.
    await validateRecipients(config.recipients);
    return { kind: 'age', recipients: config.recipients };
  }
  if (config.passphrase) return { kind: 'age', passphrase: config.passphrase };
  if (config.passphraseFile)
    return { kind: 'age', passphrase: await readPassphraseFile(config.passphraseFile) };
  return { kind: 'none' };
}
