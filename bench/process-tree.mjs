// The processes below a pid, read from /proc: what the benchmarks sum to give a whole tree's memory.
import fs from 'node:fs';

/** pid → ppid of every process now. */
export function processTable() {
  const table = new Map();
  for (const name of fs.readdirSync('/proc')) {
    if (!/^\d+$/.test(name)) continue;
    try {
      const stat = fs.readFileSync(`/proc/${name}/stat`, 'utf8');
      // The command name is in parentheses and may hold spaces: the fields after the last ')' are fixed.
      const ppid = Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]);
      table.set(Number(name), ppid);
    } catch {
      // gone meanwhile
    }
  }
  return table;
}

/** `rootPid` and every process below it, now. */
export function descendants(rootPid) {
  const table = processTable();
  const tree = [rootPid];
  for (let i = 0; i < tree.length; i++) for (const [pid, ppid] of table) if (ppid === tree[i]) tree.push(pid);
  return tree;
}
