import { installClockOffset } from '../fault-injection/fault-points.js';
import { main } from './main.js';

installClockOffset();
await main(process.argv);
