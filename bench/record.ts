/** A typical small business record (~300 bytes of JSON), the same in every scenario. */
export const benchRecord: Record<string, unknown> = {
  title: 'Quarterly supplier review',
  status: 'open',
  owner: 'ops@example.com',
  amount: 12_450.75,
  currency: 'EUR',
  priority: 2,
  tags: ['supplier', 'finance', 'q3'],
  address: { street: '12 Harbour Road', city: 'Rotterdam', country: 'NL' },
  notes: 'Renegotiate payment terms before the next delivery window.',
};
