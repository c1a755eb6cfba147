// The per-caller budget of unknown-device lookups: a fixed minute per caller, on a clock the test turns.
import t from 'tap'
import { createUnknownBudget } from '../src/unknown-budget.js'

t.test('a caller has its budget of unknown devices a minute; another caller has its own; the next minute starts afresh', async (t) => {
  let now = 1_000_000
  const budget = createUnknownBudget(3, () => now)
  t.equal(budget.perMinute, 3)
  t.equal(budget.spentFor('a'), undefined)
  budget.charge('a', 0)
  budget.charge('a', 2)
  t.equal(budget.spentFor('a'), undefined, '2 of 3')
  budget.charge('a', 5)
  t.equal(budget.spentFor('a'), 60, 'spent: the seconds left of its minute')
  t.equal(budget.spentFor('b'), undefined, 'another caller is not held back')
  now += 59_500
  t.equal(budget.spentFor('a'), 1, 'never 0 s while refused')
  now += 500
  t.equal(budget.spentFor('a'), undefined, 'a new minute')
  budget.charge('a', 1)
  t.equal(budget.spentFor('a'), undefined)
})
