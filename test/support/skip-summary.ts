import type { Reporter, TestModule } from 'vitest/node';

/**
 * After the usual summary, lists the tests that skipped themselves with a reason (a program that is not
 * installed, a kernel feature that is missing), grouped by reason: a green run says what it did not check.
 */
export default class SkipSummary implements Reporter {
  onTestRunEnd(modules: ReadonlyArray<TestModule>): void {
    const byReason = new Map<string, string[]>();
    for (const module of modules) {
      for (const test of module.children.allTests('skipped')) {
        const result = test.result();
        const note = result.state === 'skipped' ? result.note : undefined;
        if (!note) continue;
        const list = byReason.get(note) ?? [];
        list.push(`${module.moduleId.replace(`${process.cwd()}/`, '')} > ${test.fullName}`);
        byReason.set(note, list);
      }
    }
    if (byReason.size === 0) return;
    const lines = ['', ' Skipped, with the reason:'];
    for (const [reason, tests] of byReason) {
      lines.push(`   ${tests.length} test${tests.length === 1 ? '' : 's'}: ${reason}`);
      for (const name of tests) lines.push(`     - ${name}`);
    }
    process.stdout.write(lines.join('\n') + '\n\n');
  }
}
