"""Stand up and tear down the Kubernaut Gateway E2E environment on Kind, as a graph of steps.

The modules are small and have one concept each (see README.md, "Layout"). Importing the
package imports nothing heavy: the kubernetes client and fabric are loaded only by the steps
and tasks that use them, so `invoke --list` stays fast.
"""
