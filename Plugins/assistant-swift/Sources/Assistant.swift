// Placeholder: the Swift example agent is built by the plugin ABI issue.
import CParley
