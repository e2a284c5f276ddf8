/**
 * Failures a Google Drive user actually meets, one class each so that callers (CLI exit codes,
 * notifications) can tell them apart. Every message is one line naming the cause and the fix.
 */
export class DriveError extends Error {
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = new.target.name;
  }
}

export class DriveCredentialsMissingError extends DriveError {
  constructor(readonly credentialsPath: string) {
    super(
      `No Google credentials at ${credentialsPath}: run \`litekeep auth google\` to authorize litekeep and create them.`,
    );
  }
}

export class DriveCredentialsInvalidError extends DriveError {
  constructor(
    readonly credentialsPath: string,
    reason: string,
    options?: { cause?: unknown },
  ) {
    super(
      `Google credentials at ${credentialsPath} are unusable (${reason}): run \`litekeep auth google\` again, ` +
        `or point the credentials path at an authorized_user or service_account JSON file.`,
      options,
    );
  }
}

export class DriveAuthRevokedError extends DriveError {
  constructor(description: string | undefined, options?: { cause?: unknown }) {
    super(
      `Google refused the stored refresh token (invalid_grant${description ? `: ${description}` : ''}): ` +
        `re-authorize with \`litekeep auth google\` (OAuth apps in "Testing" publishing status expire refresh tokens after 7 days; publish the app to avoid this).`,
      options,
    );
  }
}

export class DriveQuotaExceededError extends DriveError {
  constructor(serviceAccount: boolean, options?: { cause?: unknown }) {
    super(
      serviceAccount
        ? 'Google Drive storage quota exceeded (403 storageQuotaExceeded): service accounts have no storage of their own; use a folder on a shared drive (folderId) or OAuth user credentials from `litekeep auth google`.'
        : 'Google Drive storage quota exceeded (403 storageQuotaExceeded): free space in Google Drive (empty its trash too) or lower the retention counts.',
      options,
    );
  }
}

export class DriveFolderNotFoundError extends DriveError {
  constructor(readonly folderId: string) {
    super(
      `Google Drive folder ${folderId} does not exist or is not visible to litekeep: fix folderId, or use folderName to let litekeep create its folder.`,
    );
  }
}

export class DriveFileNotFoundError extends DriveError {
  constructor(readonly fileName: string) {
    super(
      `No litekeep backup named ${fileName} in the Google Drive folder: run \`litekeep list\` to see the backups that exist.`,
    );
  }
}

export class DriveChecksumMismatchError extends DriveError {
  constructor(
    readonly fileName: string,
    readonly expected: string,
    readonly actual: string,
    what: string,
    fix: string,
  ) {
    super(
      `${what} does not match for ${fileName} (expected ${expected}, got ${actual}): the copy was corrupt and has been removed; ${fix}.`,
    );
  }
}

export class DriveRequestError extends DriveError {
  constructor(
    message: string,
    readonly status?: number,
    readonly reason?: string,
    options?: { cause?: unknown },
  ) {
    super(message, options);
  }
}

export class GoogleAuthFlowError extends DriveError {}
